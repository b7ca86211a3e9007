import CoreMetrics
import Foundation
import Hummingbird
import HummingbirdTesting
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

/// The admin routes through Hummingbird's router test framework (no socket), against the
/// real Redis where a route needs it.
@Suite("Admin HTTP routes", .closesResources)
struct AdminRouteTests {
    private func server(
        token: String? = nil, loops: [ConsumeLoop] = [], liveness: Liveness = Liveness(),
        checks: [ReadinessCheck] = [], scheduler: Scheduler? = nil, routes: [AdminRoute] = [],
        handlerStallBound: Duration = .seconds(600)
    ) -> AdminServer {
        AdminServer(
            configuration: AdminConfiguration(
                host: "127.0.0.1", port: 0, token: token, handlerStallBound: handlerStallBound,
                checkTimeout: .milliseconds(300)),
            loops: loops, liveness: liveness, checks: checks, registry: PrometheusCollectorRegistry(),
            scheduler: scheduler, routes: routes, logger: Logger(label: "test.admin"))
    }

    private func test(_ server: AdminServer, _ body: @escaping @Sendable (any TestClientProtocol) async throws -> Void)
        async throws
    {
        try await Application(router: server.router()).test(.router, body)
    }

    /// The answer as a JSON object; an answer that is not one fails the test.
    private func json(_ response: TestResponse) -> [String: Any] {
        let body = Data(response.body.readableBytesView)
        guard let object = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] else {
            Issue.record("not a JSON object: \(String(decoding: body, as: UTF8.self))")
            return [:]
        }
        return object
    }

    private func bearer(_ token: String) -> HTTPFields { [.authorization: "Bearer \(token)"] }

    @Test("readiness names what is not ready as valid JSON, even for an error of several lines with quotes")
    func readinessJSON() async throws {
        let admin = server(checks: [
            ReadinessCheck("postgres") {
                throw UsageError("could not connect\n\"127.0.0.1\" port 15432: refused\n\tHINT: is it up?")
            },
            ReadinessCheck("slow") { try await Task.sleep(for: .seconds(5)) },
        ])
        try await test(admin) { client in
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                let answer = json(response)
                let problems = try #require(answer["problems"] as? [String])
                #expect(problems.contains { $0.hasPrefix("postgres: could not connect\n\"127.0.0.1\"") })
                #expect(problems.contains { $0.contains("slow") && $0.contains("no answer within") })
            }
        }
    }

    @Test("health fails when a handler call has run past its bound (a hung downstream call)")
    func hungHandler() async throws {
        let liveness = Liveness()
        let admin = server(liveness: liveness, handlerStallBound: .milliseconds(300))
        let hung = Task {
            try await liveness.busy("handler of book-rec.batches.v1") { try await Task.sleep(for: .seconds(60)) }
        }
        try await test(admin) { client in
            try await client.execute(uri: "/healthz", method: .get) { #expect($0.status == .ok) }
            try await Task.sleep(for: .milliseconds(500))
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                let answer = json(response)
                #expect(answer["status"] as? String == "stuck")
                #expect(answer["what"] as? String == "handler of book-rec.batches.v1")
            }
        }
        hung.cancel()
        try await test(admin) { client in
            try await eventually("the call to end and health to recover") {
                try await client.execute(uri: "/healthz", method: .get) { $0.status == .ok }
            }
        }
    }

    @Test("a worker's own routes: open ones answer, protected ones need the token (403 without one configured)")
    func productRoutes() async throws {
        let routes: [AdminRoute] = [
            .get("/v1/things/:id") { request in .json(200, ["id": request.parameters["id"] ?? ""]) },
            .post("/v1/things") { request in
                struct Thing: Codable { let name: String }
                return .json(201, ["created": try request.decode(Thing.self).name])
            },
        ]
        try await test(server(routes: routes)) { client in
            try await client.execute(uri: "/v1/things/42", method: .get) { response in
                #expect(response.status == .ok)
                #expect(json(response)["id"] as? String == "42")
            }
            try await client.execute(uri: "/v1/things", method: .post, body: ByteBuffer(string: "{}")) {
                #expect($0.status == .forbidden)
            }
        }
        try await test(server(token: "t0ken", routes: routes)) { client in
            try await client.execute(uri: "/v1/things", method: .post, body: ByteBuffer(string: "{\"name\":\"a\"}")) {
                #expect($0.status == .unauthorized)
            }
            try await client.execute(
                uri: "/v1/things", method: .post, headers: bearer("t0ken"), body: ByteBuffer(string: "{\"name\":\"a\"}")
            ) { response in
                #expect(response.status == .created)
                #expect(json(response)["created"] as? String == "a")
            }
            try await client.execute(
                uri: "/v1/things", method: .post, headers: bearer("t0ken"), body: ByteBuffer(string: "{\"nom\":1}")
            ) { response in
                #expect(response.status == .badRequest)
                #expect((json(response)["error"] as? String)?.contains("missing field name") == true)
            }
        }
    }

    @Test("a trigger answers 202 at once and runs in the background; the run's progress is readable; 409, 404, 400")
    func triggerAndProgress() async throws {
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        closeAfterTest { await redis.close() }
        let job = TestEnvironment.uniqueName("job")
        let release = AsyncStream<Void>.makeStream()
        let scheduler = Scheduler(
            jobs: [
                ScheduledJob(
                    name: job, schedule: .daily(hour: 0, minute: 1),
                    work: .inPlace { _, _ in for await _ in release.stream { return } })
            ],
            timeZone: TimeZone(identifier: "Asia/Shanghai")!,
            runs: JobRuns(
                redis: redis, settings: JobRunSettings(lease: .seconds(10)), owner: "test", logger: Logger(label: "t"),
                alerts: nil),
            producer: nil,
            alerts: Alerts(worker: "t", logger: Logger(label: "t"), metricsFactory: NOOPMetricsHandler.instance),
            logger: Logger(label: "test.scheduler"), metricsFactory: NOOPMetricsHandler.instance)
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(services: [scheduler], logger: Logger(label: "test")))
        let running = Task { try await group.run() }
        try await test(server(token: "t0ken", scheduler: scheduler)) { client in
            try await client.execute(uri: "/jobs/\(job)/trigger?period=20261121", method: .post) {
                #expect($0.status == .unauthorized)
            }
            try await client.execute(
                uri: "/jobs/\(job)/trigger?period=20261121", method: .post, headers: bearer("t0ken")
            ) { response in
                #expect(response.status == .accepted)
                #expect(json(response)["progress"] as? String == "/jobs/\(job)/runs/20261121")
            }
            try await client.execute(uri: "/jobs/\(job)/runs/20261121", method: .get) { response in
                #expect(response.status == .ok)
                #expect(json(response)["state"] as? String == "running")
            }
            try await client.execute(
                uri: "/jobs/\(job)/trigger?period=20261121", method: .post, headers: bearer("t0ken")
            ) { response in
                #expect(response.status == .conflict)
                #expect(json(response)["status"] as? String == "in progress")
            }
            release.continuation.yield()
            try await eventually("the run to finish") {
                try await client.execute(uri: "/jobs/\(job)/runs/20261121", method: .get) {
                    json($0)["state"] as? String == "succeeded"
                }
            }
            try await client.execute(
                uri: "/jobs/\(job)/trigger?period=20261121", method: .post, headers: bearer("t0ken")
            ) { response in
                #expect(response.status == .conflict)
                #expect(json(response)["state"] as? String == "succeeded")
            }
            try await client.execute(
                uri: "/jobs/\(job)/trigger?period=20261121&force=true", method: .post, headers: bearer("t0ken")
            ) { response in
                #expect(response.status == .accepted)
                #expect(json(response)["attempt"] as? Int == 2)
            }
            release.continuation.yield()
            try await client.execute(uri: "/jobs/no-such-job/trigger", method: .post, headers: bearer("t0ken")) {
                #expect($0.status == .notFound)
            }
            try await client.execute(
                uri: "/jobs/\(job)/trigger?period=2026-11-21", method: .post, headers: bearer("t0ken")
            ) {
                #expect($0.status == .badRequest)
            }
            try await client.execute(uri: "/jobs/\(job)/runs/19990101", method: .get) {
                #expect($0.status == .notFound)
            }
        }
        await group.triggerGracefulShutdown()
        try await running.value
    }
}

/// What only a socket shows: the metrics of a running loop through the real server.
@Suite("Admin HTTP on a socket", .closesResources)
struct AdminServerTests: LoopTesting {
    @Test("metrics count what the loop did; health and readiness are green while it runs")
    func metricsHealthReadiness() async throws {
        let topic = try await TestEnvironment.createTopic(partitions: 2)
        try await TestEnvironment.createTopic(named: topic + ".dlq", partitions: 1)
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        closeAfterTest { await redis.close() }
        let group = TestEnvironment.uniqueName("group")
        let registry = PrometheusCollectorRegistry()
        let prefix = TestEnvironment.uniqueName("metrics")
        var values = (0..<50).map { "{\"id\": \($0)}" }
        values.append("garbage")
        try await produce(topic, values)
        let worker = try loop(
            topic: topic, group: group, handler: RedisWriter(redis: redis, prefix: prefix),
            metricsFactory: PrometheusMetricsFactory(registry: registry))
        let port = AsyncStream<Int>.makeStream()
        let admin = AdminServer(
            configuration: AdminConfiguration(host: "127.0.0.1", port: 0), loops: [worker], liveness: Liveness(),
            checks: [ReadinessCheck("redis") { try await redis.send("PING") }], registry: registry,
            logger: Logger(label: "test.admin"), onListening: { port.continuation.yield($0) })
        let services = ServiceGroup(
            configuration: ServiceGroupConfiguration(services: [admin, worker], logger: Logger(label: "test.admin")))
        let task = Task { try await services.run() }
        var ports = port.stream.makeAsyncIterator()
        let url = URL(string: "http://127.0.0.1:\(try #require(await ports.next()))")!
        func get(_ path: String) async throws -> (Int, String) {
            let (data, response) = try await URLSession.shared.data(from: url.appendingPathComponent(path))
            return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
        }
        try await eventually(timeout: .seconds(60), "the loop to store 50 and dead-letter 1") {
            try await stored(redis, prefix, ids: 0..<50) == 50 && worker.statistics.snapshot.deadLettered == 1
        }
        try await eventually("the lag to be reported as 0 on both partitions") {
            let (_, text) = try await get("metrics")
            let lags = text.components(separatedBy: "\n").filter { $0.hasPrefix("prewarm_consumer_lag{") }
            return lags.count == 2 && lags.allSatisfy { Double($0.split(separator: " ").last ?? "") == 0 }
        }
        let (status, text) = try await get("metrics")
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
        #expect(try await get("healthz").0 == 200)
        #expect(try await get("readyz") == (200, "{\"status\":\"ready\"}"))
        await services.triggerGracefulShutdown()
        try await task.value
    }

    @Test("health fails when polling stalls; readiness waits for the group's assignment")
    func stalled() async throws {
        let topic = try await TestEnvironment.createTopic(partitions: 1)
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        closeAfterTest { await redis.close() }
        // A loop that never runs, so never polls: as stuck as a worker gets.
        let stuck = try loop(
            topic: topic, group: TestEnvironment.uniqueName("group"), handler: RedisWriter(redis: redis, prefix: "x"))
        let admin = AdminServer(
            configuration: AdminConfiguration(host: "127.0.0.1", port: 0, pollStallBound: .seconds(3)),
            loops: [stuck], liveness: Liveness(), checks: [], registry: PrometheusCollectorRegistry(),
            logger: Logger(label: "test.admin"))
        try await Application(router: admin.router()).test(.router) { client in
            try await client.execute(uri: "/healthz", method: .get) {
                #expect($0.status == .ok, "within the bound, a loop that has not polled yet is healthy")
            }
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                #expect(String(buffer: response.body).contains("has not been given its partitions"))
            }
            try await Task.sleep(for: .milliseconds(3200))
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                #expect(String(buffer: response.body).contains("stalled"))
            }
        }
    }
}
