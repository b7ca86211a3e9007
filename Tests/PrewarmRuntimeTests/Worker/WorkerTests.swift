import Foundation
import Kafka
import Postgres
import Redis
import ServiceLifecycle
import Synchronization
import TestSupport
import Testing

@testable import PrewarmRuntime

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// What the test workers' static declarations read (their group and topic), set by each
/// test of the suite, which runs its tests one at a time.
enum TestWorkerPlan {
    static let current = Mutex<(group: String?, topic: String)>((nil, ""))
    static var group: String? { current.withLock { $0.group } }
    static var topic: String { current.withLock { $0.topic } }
    static func set(group: String, topic: String) { current.withLock { $0 = (group, topic) } }
}

/// No consumer group: an HTTP-only worker like recommend-api.
struct HTTPOnlyWorker: WorkerDefinition {
    static let name = "http-only"
    static let abstract = "serves one route"
    let adminRoutes: [AdminRoute]

    init(context: WorkerContext) async throws {
        let redis = context.redis
        adminRoutes = [
            .get("/v1/echo/:word") { request in
                try await redis.send("SET", "http-only:last", request.parameters["word"] ?? "")
                return .json(200, ["word": request.parameters["word"] ?? ""])
            }
        ]
    }
}

/// A consumer whose handler hangs on its first batch, like a downstream call that never answers.
struct HangingWorker: WorkerDefinition {
    static let name = "hanging"
    static let abstract = "hangs"
    static var consumerGroup: String? { TestWorkerPlan.group }
    let routes: [TopicRoute]

    struct Hang: TopicHandler {
        func decode(_ message: KafkaMessage) throws -> String { message.valueString }
        func handle(_ batch: [Decoded<String>]) async throws { try await Task.sleep(for: .seconds(3600)) }
    }

    init(context: WorkerContext) async throws {
        routes = [TopicRoute(topic: TestWorkerPlan.topic, handler: Hang())]
    }
}

/// Uses every pool: Redis and PostgreSQL, beside a consumer.
struct PoolsWorker: WorkerDefinition {
    static let name = "pools-worker"
    static let abstract = "opens every pool"
    static let usesPostgres = true
    static var consumerGroup: String? { TestWorkerPlan.group }
    let routes: [TopicRoute]

    init(context: WorkerContext) async throws {
        // Touch every connection of both pools.
        _ = try await concurrentMap(Array(0..<8), limit: 8) { _ in
            try await context.postgres.withConnection { try await $0.query("SELECT pg_sleep(0.05)") }
        }
        for _ in 0..<((context.redis as? RedisPool)?.size ?? 1) { try await context.redis.send("PING") }
        routes = [TopicRoute(topic: TestWorkerPlan.topic, handler: HangingWorker.Hang())]
    }
}

@Suite("Workers run in process through Worker.run", .closesResources, .serialized)
struct WorkerTests {
    private func environment(_ extra: [String: String] = [:]) throws -> [String: String] {
        TestEnvironment.values.merging(
            [
                "PREWARM_ADMIN_HOST": "127.0.0.1", "PREWARM_ADMIN_PORT": "0",
                "PREWARM_KAFKA_CONSUMER_SESSION_TIMEOUT_MS": "6000",

                "PREWARM_KAFKA_CONSUMER_HEARTBEAT_INTERVAL_MS": "500",
            ].merging(extra) { $1 }
        ) { $1 }
    }

    /// Runs the worker until the test ends (or `stop`); returns its admin URL.
    private func start<Definition: WorkerDefinition>(
        _ definition: Definition.Type, _ environment: [String: String]
    ) async throws -> (URL, WorkerStop, Task<Void, any Error>) {
        let settings = try WorkerSettings.of(definition, environment: environment)
        let stop = WorkerStop()
        let port = AsyncStream<Int>.makeStream()
        let task = Task {
            try await Worker.run(definition, settings: settings, stop: stop) { port.continuation.yield($0) }
        }
        closeAfterTest {
            await stop.stop()
            _ = try? await task.value
        }
        var ports = port.stream.makeAsyncIterator()
        let bound = try #require(await ports.next())
        return (URL(string: "http://127.0.0.1:\(bound)")!, stop, task)
    }

    private func get(_ url: URL, _ path: String) async throws -> (Int, String) {
        let (data, response) = try await URLSession.shared.data(from: url.appendingPathComponent(path))
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }

    @Test("a worker without a consumer group starts, serves its own routes and is ready")
    func withoutGroup() async throws {
        let (url, _, _) = try await start(HTTPOnlyWorker.self, try environment())
        #expect(try await get(url, "v1/echo/hello") == (200, "{\"word\":\"hello\"}"))
        #expect(try await get(url, "readyz") == (200, "{\"status\":\"ready\"}"))
        #expect(try await get(url, "healthz").0 == 200)
    }

    @Test("a worker pointed at a Redis Cluster (PREWARM_REDIS_CLUSTER_NODES) reads its slot map and is ready")
    func onRedisCluster() async throws {
        let nodes = try TestEnvironment.redisClusterNodes()
        let (url, _, _) = try await start(
            HTTPOnlyWorker.self,
            try environment([
                "PREWARM_REDIS_CLUSTER_NODES": nodes.prefix(2).map(\.description).joined(separator: ","),
                "PREWARM_REDIS_DB": "0",
            ]))
        #expect(try await get(url, "readyz") == (200, "{\"status\":\"ready\"}"))
    }

    @Test(
        "a pod started before its Redis waits for it (PREWARM_STARTUP_WAIT_S), then serves; a wrong password stops it at once"
    )
    func startupWait() async throws {
        let server = try PrivateRedisServer(password: "startup-secret")
        func settings(password: String) throws -> WorkerSettings {
            try WorkerSettings.of(
                HTTPOnlyWorker.self,
                environment: try environment([
                    "PREWARM_REDIS_HOST": "127.0.0.1", "PREWARM_REDIS_PORT": String(server.port),
                    "PREWARM_REDIS_PASSWORD": password, "PREWARM_REDIS_DB": "0", "PREWARM_STARTUP_WAIT_S": "60",
                ]).filter { $0.key != "PREWARM_REDIS_SOCKET" })
        }
        let stop = WorkerStop()
        let port = AsyncStream<Int>.makeStream()
        let ended = Mutex(false)
        let task = Task {
            defer { ended.withLock { $0 = true } }
            try await Worker.run(HTTPOnlyWorker.self, settings: try settings(password: "startup-secret"), stop: stop) {
                port.continuation.yield($0)
            }
        }
        closeAfterTest {
            await stop.stop()
            _ = try? await task.value
        }
        try await Task.sleep(for: .seconds(3))
        #expect(!ended.withLock { $0 }, "still waiting for Redis, not exited")
        try await server.start()
        var ports = port.stream.makeAsyncIterator()
        let bound = try #require(await ports.next())
        let url = URL(string: "http://127.0.0.1:\(bound)")!
        #expect(try await get(url, "v1/echo/late") == (200, "{\"word\":\"late\"}"))
        let redis = try await RedisConnection.connect(server.configuration)
        closeAfterTest { await redis.close() }
        #expect(try await redis.send("GET", "http-only:last").string == "late")

        // What no wait mends fails at once, naming the cause.
        let started = ContinuousClock.now
        do {
            try await Worker.run(HTTPOnlyWorker.self, settings: try settings(password: "wrong"))
            Issue.record("a wrong password was accepted")
        } catch let error as RedisError {
            #expect(error.code == .authenticationFailed)
        }
        #expect(ContinuousClock.now - started < .seconds(10), "not retried for the start-up wait")
    }

    @Test("a pod with no partition (more pods than partitions) is ready and says why")
    func readyWithoutPartitions() async throws {
        let topic = try await TestEnvironment.createTopic(partitions: 1)
        TestWorkerPlan.set(group: TestEnvironment.uniqueName("group"), topic: topic)
        let environment = try environment()
        let (first, _, _) = try await start(HangingWorker.self, environment)
        try await eventually(timeout: .seconds(30), "the first pod to be ready") {
            try await get(first, "readyz").0 == 200
        }
        let (second, _, _) = try await start(HangingWorker.self, environment)
        try await eventually(timeout: .seconds(30), "the second pod to join and be ready") {
            let answers = [try await get(first, "readyz"), try await get(second, "readyz")]
            return answers.allSatisfy { $0.0 == 200 }
                && answers.filter { $0.1.contains("no partition assigned (more pods than partitions)") }.count == 1
        }
    }

    @Test("a handler stuck on a hung call fails /healthz after the bound, though polling goes on")
    func hungHandler() async throws {
        let topic = try await TestEnvironment.createTopic(partitions: 1)
        TestWorkerPlan.set(group: TestEnvironment.uniqueName("group"), topic: topic)
        let environment = try environment(["PREWARM_HEALTH_HANDLER_STALL_S": "5", "PREWARM_LONG_BATCH_AFTER_S": "1"])
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(bootstrapServers: try TestEnvironment.kafkaBootstrap))
        try await producer.send(KafkaProducerMessage(topic: topic, key: "k", value: "v"))
        await producer.close()
        let (url, _, _) = try await start(HangingWorker.self, environment)
        #expect(try await get(url, "healthz").0 == 200)
        try await eventually(timeout: .seconds(30), "healthz to fail on the stuck handler") {
            try await get(url, "healthz").0 == 503
        }
        #expect(try await get(url, "healthz").1.contains("\"status\":\"stuck\""))
    }

    @Test("shutdown closes every pool and client: no Redis or PostgreSQL connection is left behind")
    func shutdownClosesEverything() async throws {
        let topic = try await TestEnvironment.createTopic(partitions: 1)
        let name = PoolsWorker.name
        TestWorkerPlan.set(group: TestEnvironment.uniqueName("group"), topic: topic)
        let environment = try environment(["PREWARM_REDIS_POOL_SIZE": "3", "PREWARM_POSTGRES_POOL_SIZE": "4"])
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        closeAfterTest { await redis.close() }
        let postgres = try await PostgresConnection.connect(try TestEnvironment.postgres())
        closeAfterTest { await postgres.close() }
        func redisClients() async throws -> Int {
            try await redis.send("CLIENT", "LIST").string?.split(separator: "\n")
                .filter { $0.contains("name=\(name) ") }.count ?? -1
        }
        func postgresConnections() async throws -> Int {
            try await postgres.query(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", [name]
            ).first?[0].int ?? -1
        }
        for round in 0..<2 {
            let (url, stop, task) = try await start(PoolsWorker.self, environment)
            #expect(try await get(url, "healthz").0 == 200)
            #expect(try await redisClients() == 3, "round \(round)")
            #expect(try await postgresConnections() == 4, "round \(round)")
            await stop.stop()
            try await task.value
            #expect(try await redisClients() == 0, "every Redis connection closed")
            try await eventually("PostgreSQL to see every connection closed") { try await postgresConnections() == 0 }
        }
    }

    @Test("shutdown ends every thread a worker's clients own (a process of its own, run three times)")
    func shutdownEndsThreads() async throws {
        let topic = try await TestEnvironment.createTopic(partitions: 1)
        let output = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("life"))
            .path
        let (status, stderr) = try await TestProcess.run(
            "prewarm-testkit", ["lifecycle", "3", output],
            environment: [
                "PREWARM_TESTKIT_MODE": "consume", "PREWARM_TESTKIT_TOPIC": topic,
                "PREWARM_TESTKIT_GROUP": TestEnvironment.uniqueName("group"), "PREWARM_REDIS_POOL_SIZE": "3",
                "PREWARM_LOG_LEVEL": "warning",
            ], timeout: .seconds(90))
        let lines = TestProcess.lines(output)
        #expect(status == 0, "\(lines) \(stderr.suffix(2000))")
        let running = lines.filter { $0.hasPrefix("running") }
        let stopped = lines.filter { $0.hasPrefix("stopped") }
        #expect(running.count == 3 && stopped.count == 3)
        #expect(
            running.allSatisfy { $0.contains("redis,redis,redis") && $0.contains("postgres") && $0.contains("rdk:") })
        #expect(stopped.allSatisfy { $0.split(separator: " ").count == 2 }, "none left: \(stopped)")
    }
}
