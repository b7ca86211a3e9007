import Foundation
import Hummingbird
import Logging
import Prometheus
import ServiceLifecycle

/// Every worker's admin HTTP: `/healthz` (fails when polling stalled or a handler hangs),
/// `/readyz` (in its group and dependencies reachable), `/metrics` (Prometheus text, with
/// Hummingbird's own request metrics), `POST /jobs/{job}/trigger` (202 with the run; bearer
/// token), `GET /jobs/{job}/runs/{period}` (the run's progress), and the worker's own routes.
public final class AdminServer: Service {
    public let configuration: AdminConfiguration
    private let loops: [ConsumeLoop]
    private let liveness: Liveness
    private let checks: [ReadinessCheck]
    private let registry: PrometheusCollectorRegistry
    private let scheduler: Scheduler?
    private let routes: [AdminRoute]
    private let logger: Logger
    private let started = ContinuousClock.now
    private let onListening: @Sendable (Int) async -> Void

    public init(
        configuration: AdminConfiguration, loops: [ConsumeLoop], liveness: Liveness, checks: [ReadinessCheck],
        registry: PrometheusCollectorRegistry, scheduler: Scheduler? = nil, routes: [AdminRoute] = [],
        logger: Logger, onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.loops = loops
        self.liveness = liveness
        self.checks = checks
        self.registry = registry
        self.scheduler = scheduler
        self.routes = routes
        self.logger = logger
        self.onListening = onListening
    }

    public func run() async throws {
        let application = Application(
            router: router(),
            configuration: ApplicationConfiguration(address: .hostname(configuration.host, port: configuration.port)),
            onServerRunning: { channel in await self.onListening(channel.localAddress?.port ?? 0) },
            logger: logger)
        try await application.run()  // not runService(): that would handle SIGTERM on its own
    }

    /// The routes, for the server and for tests without a socket.
    public func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: MetricsMiddleware())
        router.get("healthz") { _, _ in self.health().response }
        router.get("readyz") { _, _ in await self.readiness().response }
        router.get("metrics") { _, _ in
            AdminResponse(
                status: 200, body: Array(self.registry.emitToString().utf8),
                contentType: "text/plain; version=0.0.4"
            ).response
        }
        let trigger = AdminRoute.post("/jobs/:job/trigger") { try await self.trigger($0) }
        let run = AdminRoute.get("/jobs/:job/runs/:period") { try await self.run($0) }
        for route in [trigger, run] + routes { add(route, to: router) }
        return router
    }

    private func add(_ route: AdminRoute, to router: Router<BasicRequestContext>) {
        Self.mount(route, on: router, token: configuration.token, logger: logger)
    }

    /// Serves `route` on `router` as every admin route is served (the console's actions too):
    /// a protected route needs `Authorization: Bearer <token>` (403 when no token is set, 401
    /// without the right one); an `AdminError` is its status, an unknown job 404, an outage
    /// 503, anything else 500 (logged).
    public static func mount(
        _ route: AdminRoute, on router: Router<BasicRequestContext>, token: String?, logger: Logger
    ) {
        let names = route.path.split(separator: "/").filter { $0.hasPrefix(":") }.map { String($0.dropFirst()) }
        router.on(RouterPath(route.path), method: HTTPRequest.Method(rawValue: route.method.rawValue)!) {
            request, context -> Response in
            if route.isProtected, let refusal = authorize(request, token: token) { return refusal.response }
            var parameters: [String: String] = [:]
            for name in names { parameters[name] = context.parameters.get(name) }
            var query: [String: String] = [:]
            for (key, value) in request.uri.queryParameters { query[String(key)] = String(value) }
            let body = try await request.body.collect(upTo: 1 << 20)
            let adminRequest = AdminRequest(
                parameters: parameters, query: query, body: Array(body.readableBytesView))
            do {
                return try await route.handler(adminRequest).response
            } catch let error as AdminError {
                return AdminResponse.error(error.status, error.message).response
            } catch let error as UnknownJob {
                return AdminResponse.error(404, error.description).response
            } catch  where Failure.kind(of: error) == .transient {
                return AdminResponse.error(503, "a dependency is unavailable: \(error)").response
            } catch {
                logger.error("admin route failed", metadata: ["route": "\(route.path)", "error": "\(error)"])
                return AdminResponse.error(500, "\(error)").response
            }
        }
    }

    /// 403 when no token is configured, 401 without the right one.
    private static func authorize(_ request: Request, token: String?) -> AdminResponse? {
        guard let token, !token.isEmpty else {
            return .error(403, "this route is disabled: set PREWARM_ADMIN_TOKEN")
        }
        guard let header = request.headers[.authorization], constantTimeEquals(header, "Bearer \(token)") else {
            return .error(401, "a valid bearer token is required")
        }
        return nil
    }

    struct Health: Codable, Equatable {
        var status: String
        var group: String?
        var what: String?
        var seconds: Double?
    }

    func health() -> AdminResponse {
        let now = ContinuousClock.now
        for loop in loops {
            let last = loop.statistics.snapshot.lastPoll ?? started
            if now - last > configuration.pollStallBound {
                return .json(
                    503, Health(status: "stalled", group: loop.configuration.groupID, seconds: (now - last).seconds))
            }
        }
        if let (what, running) = liveness.longest, running > configuration.handlerStallBound {
            return .json(503, Health(status: "stuck", what: what, seconds: running.seconds))
        }
        return .json(200, Health(status: "ok"))
    }

    struct Readiness: Codable, Equatable {
        var status: String
        var problems: [String]?
        var notes: [String]?
    }

    func readiness() async -> AdminResponse {
        let readiness = await readinessReport()
        return .json(readiness.status == "ready" ? 200 : 503, readiness)
    }

    /// What `/readyz` answers: ready, or the problems (and notes either way).
    func readinessReport() async -> Readiness {
        var problems: [String] = []
        var notes: [String] = []
        for loop in loops {
            let snapshot = loop.statistics.snapshot
            if !snapshot.joined {
                problems.append("group \(loop.configuration.groupID) has not been given its partitions yet")
            } else if snapshot.assignedPartitions.isEmpty {
                notes.append(
                    "group \(loop.configuration.groupID): no partition assigned (more pods than partitions); "
                        + "standing by")
            }
        }
        for check in checks {
            do {
                try await withTimeout(configuration.checkTimeout, "readiness check \(check.name)") {
                    try await check.check()
                }
            } catch {
                problems.append("\(check.name): \(error)")
            }
        }
        guard problems.isEmpty else {
            return Readiness(status: "not ready", problems: problems, notes: notes.isEmpty ? nil : notes)
        }
        return Readiness(status: "ready", notes: notes.isEmpty ? nil : notes)
    }

    struct TriggerAnswer: Codable, Equatable {
        var status: String
        var job: String
        var period: String
        var attempt: Int?
        var forced: Bool?
        var state: String?
        var progress: String
    }

    private func trigger(_ request: AdminRequest) async throws -> AdminResponse {
        guard let scheduler else { throw AdminError(404, "this worker has no scheduled jobs") }
        let job = request.parameters["job"] ?? ""
        let force = request.query["force"] == "true"
        let outcome = try await scheduler.trigger(job: job, period: request.query["period"], force: force)
        switch outcome {
        case .accepted(let run):
            logger.notice(
                "job triggered over HTTP",
                metadata: ["job": "\(job)", "period": "\(run.period)", "forced": "\(run.forced)"])
            return .json(
                202,
                TriggerAnswer(
                    status: "accepted", job: job, period: run.period, attempt: run.attempt, forced: run.forced,
                    progress: "/jobs/\(job)/runs/\(run.period)"))
        case .inProgress(let period):
            return .json(
                409,
                TriggerAnswer(
                    status: "in progress", job: job, period: period, progress: "/jobs/\(job)/runs/\(period)"))
        case .alreadyRan(let period, let state):
            return .json(
                409,
                TriggerAnswer(
                    status: "already ran", job: job, period: period, state: state,
                    progress: "/jobs/\(job)/runs/\(period)"))
        }
    }

    private func run(_ request: AdminRequest) async throws -> AdminResponse {
        guard let scheduler else { throw AdminError(404, "this worker has no scheduled jobs") }
        let job = request.parameters["job"] ?? ""
        let period = request.parameters["period"] ?? ""
        guard scheduler.jobs.contains(where: { $0.name == job }) else {
            throw UnknownJob(job, known: scheduler.jobs.map(\.name))
        }
        guard let progress = try await scheduler.runs.progress(job: job, period: period) else {
            throw AdminError(404, "no run of \(job) for \(period)")
        }
        return .json(200, progress)
    }

    /// Compares without stopping at the first difference, so timing does not leak the token.
    static func constantTimeEquals(_ lhs: String, _ rhs: String) -> Bool {
        let left = Array(lhs.utf8)
        let right = Array(rhs.utf8)
        var difference = UInt8(left.count == right.count ? 0 : 1)
        for index in 0..<max(left.count, right.count) {
            difference |= (index < left.count ? left[index] : 0) ^ (index < right.count ? right[index] : 0)
        }
        return difference == 0
    }
}

extension AdminResponse {
    var response: Response {
        Response(
            status: HTTPResponse.Status(code: status), headers: [.contentType: contentType],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }
}
