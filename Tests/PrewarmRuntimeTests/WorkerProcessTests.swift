import Foundation
import Kafka
import Redis
import TestSupport
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// A real worker process (prewarm-testkit consume) killed or stopped by signals.
@Suite("Worker processes under kill -9 and SIGTERM")
struct WorkerProcessTests: LoopTesting {
    private func worker(_ topic: String, _ group: String, _ prefix: String, delayMilliseconds: Int) throws -> (
        TestProcess, String
    ) {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("worker"))
            .path
        let process = try TestProcess.start(
            "prewarm-testkit", ["consume", topic, group, prefix, String(delayMilliseconds), output])
        return (process, output)
    }

    private func processedIDs(_ redis: RedisConnection, _ prefix: String) async throws -> [String: Int] {
        let flat = try await redis.send("HGETALL", prefix).array ?? []
        var counts: [String: Int] = [:]
        for index in stride(from: 0, to: flat.count - 1, by: 2) {
            counts[flat[index].string ?? ""] = Int(flat[index + 1].integer ?? 0)
        }
        return counts
    }

    @Test("a worker killed (kill -9) mid-batch, then restarted, processes every message at least once")
    func crashMidBatch() async throws {
        let topic = try TestEnvironment.createTopic(partitions: 2)
        let group = TestEnvironment.uniqueName("group")
        let prefix = TestEnvironment.uniqueName("crash")
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        defer { Task { await redis.close() } }
        try await produce(topic, (0..<200).map(String.init))

        let (first, _) = try worker(topic, group, prefix, delayMilliseconds: 200)
        defer { first.kill() }
        try await eventually(timeout: .seconds(60), "the first worker to be part-way through") {
            try await redis.send("HLEN", prefix).integer ?? 0 >= 40
        }
        first.kill()
        let beforeCrash = try await processedIDs(redis, prefix).count
        #expect(beforeCrash < 200, "killed before it finished")

        let (second, output) = try worker(topic, group, prefix, delayMilliseconds: 20)
        defer { second.kill() }
        try await eventually(timeout: .seconds(90), "the restarted worker to process the rest") {
            try await processedIDs(redis, prefix).count == 200
        }
        let counts = try await processedIDs(redis, prefix)
        #expect(Set(counts.keys) == Set((0..<200).map(String.init)), "none lost")
        #expect(counts.values.allSatisfy { $0 >= 1 })
        second.signal(SIGTERM)
        try await eventually(timeout: .seconds(30), "the second worker to exit") {
            TestProcess.lines(output).contains("exited")
        }
    }

    @Test("SIGTERM during a batch: the batch finishes, is committed, and the worker exits cleanly in time")
    func sigtermDuringBatch() async throws {
        let topic = try TestEnvironment.createTopic(partitions: 1)
        let group = TestEnvironment.uniqueName("group")
        let prefix = TestEnvironment.uniqueName("term")
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        defer { Task { await redis.close() } }
        try await produce(topic, (0..<60).map(String.init))

        let (process, output) = try worker(topic, group, prefix, delayMilliseconds: 1500)
        defer { process.kill() }
        try await eventually(timeout: .seconds(60), "a batch to start") {
            try await redis.send("EXISTS", prefix + ":in-batch") == .integer(1)
        }
        // The real worker serves its admin endpoints while it works.
        let port = try #require(TestProcess.lines(output).first { $0.hasPrefix("admin ") }.map { $0.dropFirst(6) })
        let (health, _) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(port)/healthz")!)
        #expect(String(decoding: health, as: UTF8.self) == "{\"status\":\"ok\"}")
        let signalled = ContinuousClock.now
        process.signal(SIGTERM)
        try await eventually(timeout: .seconds(30), "the worker to exit") {
            TestProcess.lines(output).contains("exited")
        }
        #expect(ContinuousClock.now - signalled < .seconds(25), "within Kubernetes' grace period")
        #expect(!TestProcess.lines(output).contains { $0.hasPrefix("error") })

        let written = try await processedIDs(redis, prefix)
        #expect(!written.isEmpty, "the batch in hand was finished")
        let admin = try KafkaAdmin(bootstrapServers: try TestEnvironment.kafkaBootstrap)
        let committed = try await admin.committedOffsets(group: group, partitions: [KafkaTopicPartition(topic, 0)])
        await admin.close()
        #expect(committed[KafkaTopicPartition(topic, 0)] == Int64(written.count), "and committed, no further")
    }
}
