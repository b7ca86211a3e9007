import AsyncHTTPClient
import Foundation
import Hummingbird
import Kafka
import Logging
import NIOCore
import Postgres
import PrewarmConfiguration
import PrewarmRuntime
import Redis

/// `prewarmctl console`: one page of the fleet, refreshed live, and its actions.
///
/// - `GET /`: the page (HTML, CSS and script in one answer; nothing from elsewhere).
/// - `GET /api/snapshot`: what the page draws (`ConsoleSnapshot`).
/// - `POST /api/auth`: 204 with the right bearer token (the page checks the token once).
/// - `POST /api/jobs/:job/trigger?force=true&period=...`: sent on to a ready pod that runs the job
///   (its `POST /jobs/:job/trigger`, same token); its answer comes back as it is.
/// - `POST /api/tasks/:kind/:key/retry`: a failed or cancelled task again from its checkpoint,
///   its exhausted batches revived (as `prewarmctl ka retry`).
/// - `POST /api/dlq/:topic/replay?limit=n`: a dead-letter topic sent back (as `prewarmctl dlq replay`).
///
/// The actions are admin routes (`AdminServer.mount`): they need `PREWARM_ADMIN_TOKEN` as a
/// bearer token, and are off (403) when the console has none.
public struct ConsoleServer: Sendable {
    public let sampler: ConsoleSampler
    let redis: any RedisClient
    let postgres: PostgresPool?
    let kafka: GroupOperations?
    let token: String?
    let logger: Logger

    public init(
        sampler: ConsoleSampler, redis: any RedisClient, postgres: PostgresPool?, kafka: GroupOperations?,
        token: String?, logger: Logger
    ) {
        self.sampler = sampler
        self.redis = redis
        self.postgres = postgres
        self.kafka = kafka
        self.token = token
        self.logger = logger
    }

    /// Serves on `host:port` until cancelled, the sampler refreshing beside it; `onListening`
    /// gets the port (0 asks for any free one).
    public func run(host: String, port: Int, onListening: @escaping @Sendable (Int) async -> Void = { _ in })
        async throws
    {
        let application = Application(
            router: router(),
            configuration: ApplicationConfiguration(address: .hostname(host, port: port)),
            onServerRunning: { channel in await onListening(channel.localAddress?.port ?? 0) },
            logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await sampler.run() }
            group.addTask { try await application.run() }
            try await group.next()
            group.cancelAll()
        }
    }

    public func router() -> Router<BasicRequestContext> {
        let router = Router()
        for route in routes() { AdminServer.mount(route, on: router, token: token, logger: logger) }
        return router
    }

    func routes() -> [AdminRoute] {
        [
            .get("/") { _ in
                AdminResponse(status: 200, body: Array(ConsolePage.html.utf8), contentType: "text/html; charset=utf-8")
            },
            .get("/api/snapshot") { _ in .json(200, await sampler.snapshot) },
            .post("/api/auth") { _ in AdminResponse(status: 204, body: []) },
            .post("/api/jobs/:job/trigger") { try await trigger($0) },
            .post("/api/tasks/:kind/:key/retry") { try await retry($0) },
            .post("/api/dlq/:topic/replay") { try await replay($0) },
        ]
    }

    /// `host:port` or `[v6]:port`, nothing else (no user, path or query).
    static func isPlainAddress(_ address: String) -> Bool {
        address.wholeMatch(of: #/([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}/#) != nil
    }

    struct RetryAnswer: Codable {
        var status: String
        var task: TaskRecord
        var revived: Int
    }

    private func retry(_ request: AdminRequest) async throws -> AdminResponse {
        guard let postgres else { throw AdminError(404, "the console has no PostgreSQL (PREWARM_POSTGRES_URL)") }
        let kind = request.parameters["kind"] ?? ""
        let key = request.parameters["key"] ?? ""
        let queue = TaskQueue(pool: postgres, settings: TaskSettings())
        guard let (task, revived) = try await queue.retry(kind: kind, key: key, reviving: RetryTable(pool: postgres))
        else {
            throw AdminError(409, "\(kind) \(key) has no failed or cancelled task to retry")
        }
        logger.notice("task retried from the console", metadata: ["kind": "\(kind)", "key": "\(key)"])
        await sampler.refreshStores()
        return .json(202, RetryAnswer(status: "queued again from its checkpoint", task: task, revived: revived))
    }

    private func replay(_ request: AdminRequest) async throws -> AdminResponse {
        guard let kafka else { throw AdminError(404, "the console has no Kafka (PREWARM_KAFKA_BOOTSTRAP_SERVERS)") }
        let topic = request.parameters["topic"] ?? ""
        let known = TopicCatalog.sources.compactMap(\.deadLetterTopic)
        guard known.contains(topic) else {
            throw AdminError(404, "\(topic) is not a dead-letter topic of the fleet (\(known.joined(separator: ", ")))")
        }
        var limit: Int?
        if let text = request.query["limit"] {
            guard let value = Int(text), value >= 1 else { throw AdminError(400, "limit must be at least 1") }
            limit = value
        }
        let report = try await kafka.replayDeadLetters(
            from: topic, limit: limit, store: postgres.map { DeadLetterStore(pool: $0) })
        logger.notice(
            "dead letters replayed from the console", metadata: ["topic": "\(topic)", "total": "\(report.total)"])
        await sampler.refresh()
        return .json(200, ["replayed": report.total])
    }

    /// Sent on to the first ready pod on the board that runs `job` (then the next, if one
    /// cannot be reached): the pod's answer, its status and body unchanged.
    private func trigger(_ request: AdminRequest) async throws -> AdminResponse {
        let job = request.parameters["job"] ?? ""
        let pods = try await PodBoard.read(redis)
        let runners = pods.filter { $0.jobs.contains(job) }
        guard !runners.isEmpty else {
            let known = Set(pods.flatMap(\.jobs)).sorted()
            throw AdminError(404, "no pod on the board runs job '\(job)' (jobs: \(known.joined(separator: ", ")))")
        }
        var query: [String] = []
        if request.query["force"] == "true" { query.append("force=true") }
        if let period = request.query["period"], !period.isEmpty {
            // Letters, digits and -_. only: nothing of it can start another parameter.
            let plain = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-_."))
            query.append("period=\(period.addingPercentEncoding(withAllowedCharacters: plain) ?? "")")
        }
        var lastError = "no pod of it is ready"
        // The token goes only to a plain host:port the board holds for a live pod.
        for pod in runners.filter(\.ready) where Self.isPlainAddress(pod.admin) {
            let path = "/jobs/\(job)/trigger" + (query.isEmpty ? "" : "?" + query.joined(separator: "&"))
            var call = HTTPClientRequest(url: "http://\(pod.admin)\(path)")
            call.method = .POST
            if let token { call.headers.add(name: "Authorization", value: "Bearer \(token)") }
            do {
                // A pod answers a trigger at once (202, the run goes on in the background); one
                // that died after its last beat refuses, and the client retries a refused connect
                // until the deadline: 3 s, then the next pod.
                let answer = try await HTTPClient.shared.execute(call, timeout: .seconds(3))
                let body = try await answer.body.collect(upTo: 1 << 20)
                logger.notice(
                    "job triggered from the console",
                    metadata: ["job": "\(job)", "pod": "\(pod.owner)", "status": "\(answer.status.code)"])
                await sampler.refreshStores()
                return AdminResponse(status: Int(answer.status.code), body: Array(body.readableBytesView))
            } catch {
                lastError = "\(pod.owner) at \(pod.admin): \(error)"
            }
        }
        throw AdminError(503, "no ready pod that runs '\(job)' answered: \(lastError)")
    }
}
