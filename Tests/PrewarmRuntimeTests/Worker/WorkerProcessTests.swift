import Foundation
import Kafka
import Redis
import TestSupport
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// A real worker process (prewarm-testkit consume) killed or stopped by signals.
@Suite("Worker processes under kill -9 and SIGTERM", .closesResources)
struct WorkerProcessTests: LoopTesting {
    /// A `prewarm-testkit worker` consuming `topic`; its admin port.
    private func worker(_ topic: String, _ group: String, _ prefix: String, delayMilliseconds: Int) throws -> (
        TestProcess, Int
    ) {
        let port = try TestEnvironment.freePort()
        let process = try TestProcess.start(
            "prewarm-testkit", ["worker"],
            environment: [
                "PREWARM_TESTKIT_MODE": "consume", "PREWARM_TESTKIT_TOPIC": topic, "PREWARM_TESTKIT_GROUP": group,
                "PREWARM_TESTKIT_PREFIX": prefix, "PREWARM_TESTKIT_DELAY_MS": String(delayMilliseconds),
                "PREWARM_ADMIN_PORT": String(port), "PREWARM_ADMIN_HOST": "127.0.0.1",
            ])
        closeAfterTest { await process.stop() }
        return (process, port)
    }

    private func processedIDs(_ redis: RedisConnection, _ prefix: String) async throws -> [String: Int] {
        let flat = try await redis.send("HGETALL", prefix).array ?? []
        var counts: [String: Int] = [:]
        for index in stride(from: 0, to: flat.count - 1, by: 2) {
            counts[flat[index].string ?? ""] = Int(flat[index + 1].integer ?? 0)
        }
        return counts
    }

    @Test(
        "a worker killed (kill -9) mid-batch, then restarted, processes every message at least once",
        .enabled(
            if: TestEnvironment.broker.evictsDeadMembers, "kills a consumer: needs a broker that evicts dead members"))
    func crashMidBatch() async throws {
        let topic = try await TestEnvironment.createTopic(partitions: 2)
        let group = TestEnvironment.uniqueName("group")
        let prefix = TestEnvironment.uniqueName("crash")
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        closeAfterTest { await redis.close() }
        try await produce(topic, (0..<200).map(String.init))

        let (first, _) = try worker(topic, group, prefix, delayMilliseconds: 200)
        try await eventually(timeout: .seconds(60), "the first worker to be part-way through") {
            try await redis.send("HLEN", prefix).integer ?? 0 >= 40
        }
        first.kill()
        let beforeCrash = try await processedIDs(redis, prefix).count
        #expect(beforeCrash < 200, "killed before it finished")

        let (second, _) = try worker(topic, group, prefix, delayMilliseconds: 20)
        try await eventually(timeout: .seconds(90), "the restarted worker to process the rest") {
            try await processedIDs(redis, prefix).count == 200
        }
        let counts = try await processedIDs(redis, prefix)
        #expect(Set(counts.keys) == Set((0..<200).map(String.init)), "none lost")
        #expect(counts.values.allSatisfy { $0 >= 1 })
        second.signal(SIGTERM)
        #expect(try await second.child.wait(timeout: .seconds(30)) == 0, "a clean exit")
    }

    @Test("SIGTERM during a batch: the batch finishes, is committed, and the worker exits cleanly in time")
    func sigtermDuringBatch() async throws {
        let topic = try await TestEnvironment.createTopic(partitions: 1)
        let group = TestEnvironment.uniqueName("group")
        let prefix = TestEnvironment.uniqueName("term")
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        closeAfterTest { await redis.close() }
        try await produce(topic, (0..<60).map(String.init))

        let (process, port) = try worker(topic, group, prefix, delayMilliseconds: 1500)
        try await eventually(timeout: .seconds(60), "a batch to start") {
            try await redis.send("EXISTS", prefix + ":in-batch") == .integer(1)
        }
        // The real worker serves its admin endpoints while it works.
        let (health, _) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(port)/healthz")!)
        #expect(String(decoding: health, as: UTF8.self) == "{\"status\":\"ok\"}")
        let signalled = ContinuousClock.now
        process.signal(SIGTERM)
        #expect(try await process.child.wait(timeout: .seconds(30)) == 0, "a clean exit")
        #expect(ContinuousClock.now - signalled < .seconds(25), "within Kubernetes' grace period")

        let written = try await processedIDs(redis, prefix)
        #expect(!written.isEmpty, "the batch in hand was finished")
        let admin = try KafkaAdmin(bootstrapServers: try TestEnvironment.kafkaBootstrap)
        let committed = try await admin.committedOffsets(group: group, partitions: [KafkaTopicPartition(topic, 0)])
        await admin.close()
        #expect(committed[KafkaTopicPartition(topic, 0)] == Int64(written.count), "and committed, no further")
    }

    @Test("SIGTERM while a handler is stuck beyond cancellation: the process still ends within its shutdown bound")
    func sigtermWhileStuck() async throws {
        let topic = try await TestEnvironment.createTopic(partitions: 1)
        try await produce(topic, ["0"])
        let port = try TestEnvironment.freePort()
        let process = try TestProcess.start(
            "prewarm-testkit", ["worker"],
            environment: [
                "PREWARM_TESTKIT_MODE": "stuck", "PREWARM_TESTKIT_TOPIC": topic,
                "PREWARM_TESTKIT_GROUP": TestEnvironment.uniqueName("group"), "PREWARM_ADMIN_PORT": String(port),
                "PREWARM_ADMIN_HOST": "127.0.0.1", "PREWARM_SHUTDOWN_TIMEOUT_S": "4",
            ])
        closeAfterTest { await process.stop() }
        try await eventually(timeout: .seconds(60), "the handler to be stuck") {
            TestProcess.lines(process.logFile).contains { $0.contains("partitions assigned") }
        }
        try await Task.sleep(for: .seconds(1))
        let signalled = ContinuousClock.now
        process.signal(SIGTERM)
        let status = try await process.child.wait(timeout: .seconds(30))
        #expect(ContinuousClock.now - signalled < .seconds(6), "within its bound of 4 s")
        #expect(status == 1, "not a clean exit, and it says so")
        #expect(
            TestProcess.lines(process.logFile).contains {
                $0.contains("did not stop within PREWARM_SHUTDOWN_TIMEOUT_S")
            })
    }

    @Test("a worker process bootstraps metrics once: Hummingbird's own request metrics are in /metrics")
    func requestMetrics() async throws {
        let port = try TestEnvironment.freePort()
        let process = try TestProcess.start(
            "prewarm-testkit", ["worker"],
            environment: [
                "PREWARM_TESTKIT_MODE": "idle", "PREWARM_ADMIN_PORT": String(port), "PREWARM_ADMIN_HOST": "127.0.0.1",
            ])
        closeAfterTest { await process.stop() }
        let base = URL(string: "http://127.0.0.1:\(port)")!
        try await eventually("the worker to serve its route") {
            let answer = try? await URLSession.shared.data(from: base.appendingPathComponent("testkit/hello"))
            return (answer?.1 as? HTTPURLResponse)?.statusCode == 200
        }
        let (data, _) = try await URLSession.shared.data(from: base.appendingPathComponent("metrics"))
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.contains("hb_requests"), "\(text.prefix(500))")
        #expect(text.contains("/testkit/hello"))
    }
}
