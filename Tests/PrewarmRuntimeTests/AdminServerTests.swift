import Foundation
import Logging
import Prometheus
import Redis
import ServiceLifecycle
import TestSupport
import Testing

@testable import PrewarmRuntime

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

@Suite("Admin HTTP: health, readiness, metrics, triggers")
struct AdminServerTests: LoopTesting {
    /// Runs the services with an admin server on a free port; returns its base URL.
    private func serve(
        _ admin: (@escaping @Sendable (Int) async -> Void) -> AdminServer, with others: [any Service] = []
    ) async throws -> (URL, ServiceGroup, Task<Void, any Error>) {
        let port = AsyncStream<Int>.makeStream()
        let server = admin { port.continuation.yield($0) }
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(services: others + [server], logger: Logger(label: "test.admin")))
        let task = Task { try await group.run() }
        var iterator = port.stream.makeAsyncIterator()
        let bound = try #require(await iterator.next())
        return (URL(string: "http://127.0.0.1:\(bound)")!, group, task)
    }

    private func get(_ url: URL, _ path: String) async throws -> (Int, String) {
        try await send(URLRequest(url: url.appendingPathComponent(path)))
    }

    private func send(_ request: URLRequest) async throws -> (Int, String) {
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }

    private func post(_ url: URL, _ path: String, token: String?) async throws -> (Int, String) {
        var request = URLRequest(url: URL(string: url.absoluteString + path)!)
        request.httpMethod = "POST"
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        return try await send(request)
    }

    @Test("metrics count what the loop did; health and readiness are green while it runs")
    func metricsHealthReadiness() async throws {
        let topic = try TestEnvironment.createTopic(partitions: 2)
        try TestEnvironment.createTopic(named: topic + ".dlq", partitions: 1)
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        defer { Task { await redis.close() } }
        let group = TestEnvironment.uniqueName("group")
        let registry = PrometheusCollectorRegistry()
        let metrics = WorkerMetrics(group: group, factory: PrometheusMetricsFactory(registry: registry))
        let prefix = TestEnvironment.uniqueName("metrics")
        var values = (0..<50).map { "{\"id\": \($0)}" }
        values.append("garbage")
        try await produce(topic, values)
        let worker = try loop(
            topic: topic, group: group, handler: RedisWriter(redis: redis, prefix: prefix), metrics: metrics)
        let (url, services, task) = try await serve(
            { listening in
                AdminServer(
                    configuration: AdminConfiguration(host: "127.0.0.1", port: 0), loops: [worker],
                    checks: [ReadinessCheck("redis") { try await redis.send("PING") }], registry: registry,
                    logger: Logger(label: "test.admin"), onListening: listening)
            }, with: [worker])
        try await eventually(timeout: .seconds(60), "the loop to store 50 and dead-letter 1") {
            try await stored(redis, prefix, ids: 0..<50) == 50 && worker.statistics.snapshot.deadLettered == 1
        }
        try await eventually("the lag to be reported as 0 on both partitions") {
            let (_, text) = try await get(url, "metrics")
            let lags = text.components(separatedBy: "\n").filter { $0.hasPrefix("prewarm_consumer_lag{") }
            return lags.count == 2 && lags.allSatisfy { Double($0.split(separator: " ").last ?? "") == 0 }
        }
        let (status, text) = try await get(url, "metrics")
        #expect(status == 200)
        #expect(
            text.contains(
                "prewarm_messages_dead_lettered_total{group=\"\(group)\",topic=\"\(topic)\",error_class=\"DecodingError\"} 1"
            ))
        let processed = text.components(separatedBy: "\n").first {
            $0.hasPrefix("prewarm_messages_processed_total{group=\"\(group)\"")
        }
        #expect(processed.flatMap { Double($0.split(separator: " ").last ?? "") }.map { $0 >= 50 } == true)
        #expect(text.contains("prewarm_batch_duration_seconds"))
        #expect(!text.contains(prefix), "no ids in labels")
        #expect(try await get(url, "healthz").0 == 200)
        #expect(try await get(url, "readyz") == (200, "{\"status\":\"ready\"}"))
        await services.triggerGracefulShutdown()
        try await task.value
    }

    @Test("readiness fails, naming the dependency, when one is unreachable; health fails when polling stalls")
    func notReadyAndStalled() async throws {
        let topic = try TestEnvironment.createTopic(partitions: 1)
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        defer { Task { await redis.close() } }
        // A loop that never polls: as stuck as a worker gets.
        let stuck = try loop(
            topic: topic, group: TestEnvironment.uniqueName("group"), handler: RedisWriter(redis: redis, prefix: "x"))
        let (url, services, task) = try await serve(
            { listening in
                AdminServer(
                    configuration: AdminConfiguration(
                        host: "127.0.0.1", port: 0, pollStallBound: .seconds(2), checkTimeout: .milliseconds(300)),
                    loops: [stuck],
                    checks: [ReadinessCheck("postgres") { try await Task.sleep(for: .seconds(5)) }],
                    registry: PrometheusCollectorRegistry(), logger: Logger(label: "test.admin"), onListening: listening
                )
            })
        #expect(try await get(url, "healthz").0 == 200, "within the bound, a loop that has not polled yet is healthy")
        let (status, body) = try await get(url, "readyz")
        #expect(status == 503)
        #expect(body.contains("postgres: no answer within"))
        #expect(body.contains("no partitions assigned"))
        try await eventually(timeout: .seconds(10), "healthz to report the stall") {
            try await get(url, "healthz").0 == 503
        }
        #expect(try await get(url, "healthz").1.contains("stalled"))
        await services.triggerGracefulShutdown()
        try await task.value
    }

    @Test("triggers need the bearer token; without one configured they are refused")
    func triggers() async throws {
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        defer { Task { await redis.close() } }
        let job = TestEnvironment.uniqueName("job")
        let scheduler = Scheduler(
            jobs: [ScheduledJob(name: job, schedule: .daily(hour: 0, minute: 1)) { _ in }],
            timeZone: TimeZone(identifier: "Asia/Shanghai")!, flags: RedisFlags(redis: redis), owner: "test",
            logger: Logger(label: "test.scheduler"))
        func admin(token: String?) -> (@escaping @Sendable (Int) async -> Void) -> AdminServer {
            { listening in
                AdminServer(
                    configuration: AdminConfiguration(host: "127.0.0.1", port: 0, token: token), loops: [], checks: [],
                    registry: PrometheusCollectorRegistry(), scheduler: scheduler, logger: Logger(label: "test.admin"),
                    onListening: listening)
            }
        }
        let (open, openGroup, openTask) = try await serve(admin(token: nil))
        #expect(try await post(open, "/jobs/\(job)/trigger", token: "anything").0 == 403)
        await openGroup.triggerGracefulShutdown()
        try await openTask.value

        let (url, services, task) = try await serve(admin(token: "s3cret-token"))
        #expect(try await post(url, "/jobs/\(job)/trigger", token: nil).0 == 401)
        #expect(try await post(url, "/jobs/\(job)/trigger", token: "wrong").0 == 401)
        #expect(try await post(url, "/jobs/\(job)/trigger?period=20261121", token: "s3cret-token").0 == 200)
        #expect(try await post(url, "/jobs/\(job)/trigger?period=20261121", token: "s3cret-token").0 == 409)
        let forced = try await post(url, "/jobs/\(job)/trigger?period=20261121&force=true", token: "s3cret-token")
        #expect(forced.0 == 200 && forced.1.contains("\"forced\":true"))
        #expect(try await post(url, "/jobs/no-such-job/trigger", token: "s3cret-token").0 == 404)
        await services.triggerGracefulShutdown()
        try await task.value
    }
}
