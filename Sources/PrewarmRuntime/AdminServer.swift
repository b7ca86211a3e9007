import Foundation
import Hummingbird
import Logging
import Prometheus
import ServiceLifecycle

/// Where the admin endpoints listen and who may trigger jobs.
public struct AdminConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// Bearer token for routes that change state; without one they refuse.
    public var token: String?
    /// `/healthz` fails when no poll happened for this long.
    public var pollStallBound: Duration
    /// How long each readiness check may take.
    public var checkTimeout: Duration

    public init(
        host: String = "0.0.0.0", port: Int = 8080, token: String? = nil, pollStallBound: Duration = .seconds(60),
        checkTimeout: Duration = .seconds(2)
    ) {
        self.host = host
        self.port = port
        self.token = token
        self.pollStallBound = pollStallBound
        self.checkTimeout = checkTimeout
    }
}

/// A dependency `/readyz` checks, e.g. a Redis PING.
public struct ReadinessCheck: Sendable {
    public let name: String
    public let check: @Sendable () async throws -> Void

    public init(_ name: String, _ check: @escaping @Sendable () async throws -> Void) {
        self.name = name
        self.check = check
    }
}

/// Every worker's admin HTTP: `/healthz` (fails when polling stalled), `/readyz` (partitions
/// assigned and dependencies reachable), `/metrics` (Prometheus text) and
/// `POST /jobs/{job}/trigger` (bearer token; `?period=` and `?force=true` optional).
public final class AdminServer: Service {
    public let configuration: AdminConfiguration
    private let loops: [ConsumeLoop]
    private let checks: [ReadinessCheck]
    private let registry: PrometheusCollectorRegistry
    private let scheduler: Scheduler?
    private let logger: Logger
    private let started = ContinuousClock.now
    private let onListening: @Sendable (Int) async -> Void

    public init(
        configuration: AdminConfiguration, loops: [ConsumeLoop], checks: [ReadinessCheck],
        registry: PrometheusCollectorRegistry, scheduler: Scheduler? = nil, logger: Logger,
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.loops = loops
        self.checks = checks
        self.registry = registry
        self.scheduler = scheduler
        self.logger = logger
        self.onListening = onListening
    }

    public func run() async throws {
        let router = Router()
        router.get("healthz") { _, _ in self.health() }
        router.get("readyz") { _, _ in await self.readiness() }
        router.get("metrics") { _, _ in
            Self.response(.ok, self.registry.emitToString(), contentType: "text/plain; version=0.0.4")
        }
        router.post("jobs/:job/trigger") { request, context in
            try await self.trigger(request, context)
        }
        let application = Application(
            router: router,
            configuration: ApplicationConfiguration(address: .hostname(configuration.host, port: configuration.port)),
            onServerRunning: { channel in await self.onListening(channel.localAddress?.port ?? 0) },
            logger: logger)
        try await application.run()  // not runService(): that would handle SIGTERM on its own
    }

    func health() -> Response {
        let now = ContinuousClock.now
        for loop in loops {
            let last = loop.statistics.snapshot.lastPoll ?? started
            if now - last > configuration.pollStallBound {
                return Self.response(
                    .serviceUnavailable,
                    "{\"status\":\"stalled\",\"group\":\"\(loop.configuration.groupID)\",\"since\":\"\(now - last)\"}")
            }
        }
        return Self.response(.ok, "{\"status\":\"ok\"}")
    }

    func readiness() async -> Response {
        var problems: [String] = []
        for loop in loops where loop.statistics.snapshot.assignedPartitions.isEmpty {
            problems.append("group \(loop.configuration.groupID) has no partitions assigned")
        }
        for check in checks {
            do {
                try await withTimeout(configuration.checkTimeout) { try await check.check() }
            } catch {
                problems.append("\(check.name): \(error)")
            }
        }
        guard problems.isEmpty else {
            let list = problems.map { "\"\(Self.escape($0))\"" }.joined(separator: ",")
            return Self.response(.serviceUnavailable, "{\"status\":\"not ready\",\"problems\":[\(list)]}")
        }
        return Self.response(.ok, "{\"status\":\"ready\"}")
    }

    func trigger(_ request: Request, _ context: some RequestContext) async throws -> Response {
        guard let token = configuration.token, !token.isEmpty else {
            return Self.response(.forbidden, "{\"error\":\"triggers are disabled: set PREWARM_ADMIN_TOKEN\"}")
        }
        guard let header = request.headers[.authorization], Self.constantTimeEquals(header, "Bearer \(token)") else {
            return Self.response(.unauthorized, "{\"error\":\"a valid bearer token is required\"}")
        }
        guard let scheduler, let job = context.parameters.get("job") else {
            return Self.response(.notFound, "{\"error\":\"this worker has no scheduled jobs\"}")
        }
        let period = request.uri.queryParameters.get("period")
        let force = request.uri.queryParameters.get("force") == "true"
        do {
            switch try await scheduler.trigger(job: job, period: period, force: force) {
            case .ran(let run):
                logger.notice("job triggered over HTTP", metadata: ["job": "\(job)", "period": "\(run.period)"])
                return Self.response(.ok, "{\"status\":\"ran\",\"period\":\"\(run.period)\",\"forced\":\(run.forced)}")
            case .alreadyClaimed(_, let period):
                return Self.response(.conflict, "{\"status\":\"already claimed\",\"period\":\"\(period)\"}")
            }
        } catch let error as InvalidMessage {
            return Self.response(.notFound, "{\"error\":\"\(Self.escape(error.reason))\"}")
        }
    }

    static func response(_ status: HTTPResponse.Status, _ body: String, contentType: String = "application/json")
        -> Response
    {
        Response(
            status: status, headers: [.contentType: contentType],
            body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
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

struct TimedOutCheck: Error, CustomStringConvertible {
    let after: Duration
    var description: String { "no answer within \(after)" }
}

/// Runs `body`, giving up after `limit`.
func withTimeout(_ limit: Duration, _ body: @escaping @Sendable () async throws -> Void) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: limit)
            throw TimedOutCheck(after: limit)
        }
        try await group.next()
        group.cancelAll()
    }
}
