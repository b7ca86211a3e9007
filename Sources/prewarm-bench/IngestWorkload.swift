import EntryIngest
import Foundation
import Kafka
import Postgres
import PrewarmConfiguration

/// `make bench ingest`'s input: `count` store.entry.v1 events produced over the topic's
/// partitions, and the same work for the stock tools: the rows each shard receives
/// (`rows-NN.tsv` for psql \\copy) and the activity commands (`redis.txt` for
/// redis-cli --pipe: SADD to the day set and HINCRBY of the month hash per event).
/// Stores 1...2000 with category `s % 40` and zone `s % 25`; 200,000 users; times over the
/// 25 days before now, so the events are spread over days as a real stream is.
struct IngestWorkload {
    let count: Int
    let topic: String
    static let stores = 2000
    static let users = 200_000

    func write(to directory: String) async throws {
        let environment = EnvironmentReader(ProcessInfo.processInfo.environment)
        let kafka = try environment.kafka()
        let timeZone = try environment.timeZone()
        // librdkafka's mock broker keeps only about 5 MB of (compressed) batches per
        // partition and drops older ones; large zstd batches fit a million events in 12.
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(
                bootstrapServers: kafka.bootstrapServers,
                properties: KafkaProperties([
                    "compression.type": "zstd", "linger.ms": "200", "batch.num.messages": "100000",
                    "batch.size": "8000000",
                ]).merging(kafka.properties)))
        try await producer.prepare(topics: [topic])
        var shardFiles = try (0..<16).map { shard in
            try BufferedFile(path: directory + "/rows-\(shard < 10 ? "0" : "")\(shard).tsv")
        }
        var redisFile = try BufferedFile(path: directory + "/redis.txt")
        let now = Date().timeIntervalSince1970
        var random = SystemRandomNumberGenerator()
        var chunk: [KafkaProducerMessage] = []
        chunk.reserveCapacity(50_000)
        for index in 0..<count {
            let user = Int64.random(in: 1...Int64(Self.users), using: &random)
            let store = Int64(index % Self.stores + 1)
            let at = Date(timeIntervalSince1970: (now - Double.random(in: 60...25 * 86_400, using: &random)).rounded())
            let event = StoreEntryEvent(
                eventID: UUID(), userID: user, storeID: store, enteredAt: at)
            let message = event.message
            chunk.append(KafkaProducerMessage(topic: topic, key: message.key, value: message.json))
            let time = RFC3339.format(at)
            shardFiles[EntryIngestSchema.shard(of: user)].write(
                "\(event.eventID.lowercaseText)\t\(user)\t\(store)\t\(store % 40)\t\(store % 25)\t\(time)\n")
            let day = LocalDay.text(at, in: timeZone)
            redisFile.write("SADD {act}:day:\(day) \(user)\r\nHINCRBY {act}:month:\(day.prefix(6)) \(user) 1\r\n")
            if chunk.count == 50_000 {
                try await producer.send(chunk)
                chunk.removeAll(keepingCapacity: true)
            }
        }
        try await producer.send(chunk)
        await producer.close()
        let admin = try KafkaAdmin(bootstrapServers: kafka.bootstrapServers, properties: kafka.properties)
        let marks: [KafkaTopicPartition: (low: Int64, high: Int64)]
        do {
            let partitions = try await admin.partitionCounts([topic])[topic] ?? 0
            marks = try await admin.watermarks((0..<partitions).map { KafkaTopicPartition(topic, Int32($0)) })
        } catch {
            await admin.close()
            throw error
        }
        await admin.close()
        let retained = marks.values.map { Int($0.high - $0.low) }.reduce(0, +)
        guard retained == count else {
            throw BenchFailure(
                "\(topic) retains \(retained) of the \(count) events produced (the dev broker drops old batches)")
        }
        for index in shardFiles.indices { try shardFiles[index].close() }
        try redisFile.close()
    }
}

/// Appends text to a file through a 1 MB buffer.
struct BufferedFile {
    private let handle: FileHandle
    private var buffer: [UInt8] = []

    init(path: String) throws {
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        buffer.reserveCapacity(1 << 20)
    }

    mutating func write(_ text: String) {
        buffer.append(contentsOf: text.utf8)
        if buffer.count >= 1 << 20 { flush() }
    }

    private mutating func flush() {
        handle.write(Data(buffer))
        buffer.removeAll(keepingCapacity: true)
    }

    mutating func close() throws {
        flush()
        try handle.close()
    }
}

struct BenchFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
