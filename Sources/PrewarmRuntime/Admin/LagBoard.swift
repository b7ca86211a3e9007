import Foundation
import Kafka
import Redis
import Synchronization

/// Consumer lag as the workers see it, kept in Redis so that `prewarmctl status` and the
/// console can show it from any machine that reaches Redis, without a Kafka client: each pod
/// writes its partitions' lag every few seconds into one hash, `prewarm:lag` (field
/// `<group>|<owner>`, value `{"at": <unix seconds>, "lag": {"topic[n]": lag}}`), so a reader
/// reads one key rather than scanning a keyspace of millions. An entry older than a minute is
/// a pod that stopped without a word: readers skip and remove it; a pod that leaves its group
/// removes its own.
public struct LagBoard: Sendable {
    public static let key = "prewarm:lag"
    /// An entry not written for this long is left out.
    public static let staleAfter: Double = 60
    public let redis: any RedisClient
    public let group: String
    public let owner: String

    public init(redis: any RedisClient, group: String, owner: String) {
        self.redis = redis
        self.group = group
        self.owner = owner
    }

    struct Entry: Codable {
        var at: Double
        var lag: [String: Int64]
    }

    /// A consume loop's `onLag`: writes at most every `every`, and at once when the lag has
    /// just reached zero; an empty map (the loop left its group) removes this pod's entry.
    /// Never fails the loop.
    public func publisher(every: Duration = .seconds(5)) -> @Sendable ([KafkaTopicPartition: Int64]) async -> Void {
        let last = Mutex<(at: ContinuousClock.Instant, total: Int64)?>(nil)
        return { lags in
            let total = lags.values.reduce(0, +)
            let due = last.withLock { last in
                let caughtUp = total == 0 && (last?.total ?? 1) != 0
                guard lags.isEmpty || caughtUp || last.map({ ContinuousClock.now - $0.at >= every }) ?? true else {
                    return false
                }
                last = (.now, total)
                return true
            }
            guard due else { return }
            try? await publish(lags)
        }
    }

    public func publish(_ lags: [KafkaTopicPartition: Int64]) async throws {
        let field = "\(group)|\(owner)"
        guard !lags.isEmpty else {
            _ = try await redis.send("HDEL", Self.key, field)
            return
        }
        var entry = Entry(at: Date().timeIntervalSince1970, lag: [:])
        for (partition, lag) in lags { entry.lag["\(partition.topic)[\(partition.partition)]"] = lag }
        _ = try await redis.send(
            "HSET", Self.key, field, String(decoding: try JSONEncoder().encode(entry), as: UTF8.self))
    }

    /// Lag per group: partition (`topic[n]`) to messages behind, from every live pod.
    public static func read(_ redis: any RedisClient) async throws -> [String: [String: Int64]] {
        let oldest = Date().timeIntervalSince1970 - staleAfter
        let entries = try await RedisBoard.live(redis, key: key) { field, value -> (String, Entry)? in
            guard let split = field.firstIndex(of: "|"),
                let entry = try? JSONDecoder().decode(Entry.self, from: Data(value)), entry.at >= oldest
            else { return nil }
            return (String(field[..<split]), entry)
        }
        var groups: [String: [String: Int64]] = [:]
        for (group, entry) in entries { groups[group, default: [:]].merge(entry.lag) { $1 } }
        return groups
    }
}
