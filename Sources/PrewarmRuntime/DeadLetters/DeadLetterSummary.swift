import Foundation
import Kafka
import PrewarmConfiguration

/// A dead-letter topic at a glance, for the console: how many letters it keeps, the error
/// classes of its latest letters and a few of them.
public struct DeadLetterTopicSummary: Sendable, Codable, Equatable {
    public var topic: String
    /// Letters the topic keeps (high minus low watermark over its partitions).
    public var count: Int64
    /// Of those, the letters no replay has sent back yet: from `prewarmctl dlq replay`'s
    /// committed offsets (the replay group), the whole count before any replay.
    public var pending: Int64
    /// Error class to letters, over the latest `classesOf` letters.
    public var classes: [String: Int]
    public var classesOf: Int
    /// The latest letters, newest first.
    public var samples: [DeadLetterSample]
}

/// One dead letter as an operator reads it: never its value, never a secret.
public struct DeadLetterSample: Sendable, Codable, Equatable {
    public var partition: Int32
    public var offset: Int64
    public var key: String?
    public var errorClass: String
    public var reason: String
    public var originalTopic: String?
    public var originalPartition: String?
    public var originalOffset: String?
    public var group: String?
    /// The message's own headers (prewarm's are the fields above); a header whose name says it
    /// holds a credential shows `***`.
    public var headers: [String: String]
    public var timestampMilliseconds: Int64?

    init(_ letter: KafkaMessage) {
        func header(_ name: String) -> String? { letter.headers.last { $0.name == name }?.stringValue }
        partition = letter.partition
        offset = letter.offset
        key = letter.key.map { Self.shown(String(decoding: $0, as: UTF8.self)) }
        errorClass = header(DeadLetter.Header.errorClass) ?? "unknown"
        reason = Self.shown(Self.withoutCredentials(header(DeadLetter.Header.errorMessage) ?? ""), limit: 500)
        originalTopic = header(DeadLetter.Header.originalTopic)
        originalPartition = header(DeadLetter.Header.originalPartition)
        originalOffset = header(DeadLetter.Header.originalOffset)
        group = header(DeadLetter.Header.consumerGroup)
        headers = [:]
        for item in letter.headers where !DeadLetter.Header.all.contains(item.name) {
            headers[Self.shown(item.name, limit: 100)] =
                Self.isCredential(item.name)
                ? "***" : Self.shown(Self.withoutCredentials(item.stringValue ?? ""), limit: 200)
        }
        timestampMilliseconds = letter.timestampMilliseconds
    }

    /// A header name that says it carries a credential.
    static func isCredential(_ name: String) -> Bool {
        let lower = name.lowercased()
        return ["password", "passwd", "secret", "token", "authorization", "cookie", "credential", "api-key", "apikey"]
            .contains { lower.contains($0) }
    }

    /// Passwords masked: `scheme://user:password@host` (the password may hold `@` or `/`: up to
    /// the last `@` before the host) and `password=...` of a libpq conninfo or a query string.
    static func withoutCredentials(_ text: String) -> String {
        text.replacing(#/(?<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)\S*@/#) { "\($0.output.head)***@" }
            .replacing(#/(?i)(?<head>(password|passwd|pwd|secret|token)\s*=\s*)('[^']*'|[^\s&;,]*)/#) {
                "\($0.output.head)***"
            }
    }

    private static func shown(_ text: String, limit: Int = 200) -> String {
        text.count > limit ? String(text.prefix(limit)) + "…" : text
    }
}

extension GroupOperations {
    /// Every dead-letter topic of the catalog: its count from the watermarks, and its latest
    /// `classesOf` letters read (newest `samples` kept whole) by a consumer that joins no
    /// group and commits nothing. A topic that does not exist yet shows 0.
    public func deadLetterSummary(
        samples: Int = 5, classesOf: Int = 200, replayGroup: String = "prewarmctl-dlq-replay",
        timeout: Duration = .seconds(5)
    ) async throws -> [DeadLetterTopicSummary] {
        let topics = TopicCatalog.sources.compactMap(\.deadLetterTopic)
        let (counts, replayed) = try await using(try admin()) { admin in
            let counts = try await admin.partitionCounts(topics)
            let partitions = topics.flatMap { topic in
                (0..<(counts[topic] ?? 0)).map { KafkaTopicPartition(topic, Int32($0)) }
            }
            return (counts, try await admin.committedOffsets(group: replayGroup, partitions: partitions))
        }
        var summaries: [DeadLetterTopicSummary] = []
        let reader = try consumer(group: "prewarmctl-console", commitOnRevoke: false)
        return try await using(reader) { reader in
            for topic in topics {
                var summary = DeadLetterTopicSummary(
                    topic: topic, count: 0, pending: 0, classes: [:], classesOf: 0, samples: [])
                guard let partitions = counts[topic] else {
                    summaries.append(summary)
                    continue
                }
                let marks = try await reader.watermarks(
                    (0..<partitions).map { KafkaTopicPartition(topic, Int32($0)) })
                summary.count = marks.values.reduce(0) { $0 + $1.high - $1.low }
                summary.pending = marks.reduce(0) { total, entry in
                    let from = max((replayed[entry.key] ?? nil) ?? entry.value.low, entry.value.low)
                    return total + max(entry.value.high - from, 0)
                }
                // The latest letters: an even share of `classesOf` from each partition's tail.
                let share = Int64(max(1, classesOf / max(1, partitions)))
                let starts = marks.filter { $0.value.high > $0.value.low }.mapValues { max($0.low, $0.high - share) }
                var letters: [KafkaMessage] = []
                if !starts.isEmpty {
                    try await reader.assign(starts)
                    var unread = starts.keys.reduce(into: [:]) { $0[$1] = marks[$1]!.high }
                    let deadline = ContinuousClock.now + timeout
                    while !unread.isEmpty, ContinuousClock.now < deadline {
                        for letter in try await reader.poll(maxMessages: 500, timeoutMilliseconds: 200).messages {
                            letters.append(letter)
                            if let high = unread[letter.topicPartition], letter.offset + 1 >= high {
                                unread[letter.topicPartition] = nil
                            }
                        }
                    }
                }
                letters.sort { ($0.timestampMilliseconds ?? 0, $0.offset) > ($1.timestampMilliseconds ?? 0, $1.offset) }
                summary.classesOf = letters.count
                for letter in letters {
                    let errorClass =
                        letter.headers.last { $0.name == DeadLetter.Header.errorClass }?.stringValue ?? "unknown"
                    summary.classes[errorClass, default: 0] += 1
                }
                summary.samples = letters.prefix(samples).map(DeadLetterSample.init)
                summaries.append(summary)
            }
            return summaries
        }
    }
}
