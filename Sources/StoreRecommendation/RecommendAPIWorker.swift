import CoreMetrics
import EntryIngest
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOPosix
import PrewarmConfiguration
import PrewarmRuntime
import ServiceLifecycle

/// recommend-api's settings, each declared once.
public enum RecommendAPISettings {
    public static let host = Setting.text("PREWARM_HTTP_HOST", default: "0.0.0.0", "where the public API listens")
    public static let port = Setting.integer(
        "PREWARM_HTTP_PORT", default: 8081, in: 0...65535, "the public API's port (0: any free port)")
    public static let listLength = Setting.integer(
        "PREWARM_RECOMMEND_LIST_LENGTH", default: 4, in: 1...50, "stores in an answer")
    public static let missingTTL = Setting<Duration>.seconds(
        "PREWARM_RECOMMEND_MISSING_TTL_S", default: 60, in: 1...86_400,
        "lifetime of the marker of a store id with no open store (against repeated database misses)")
    public static let randomTTL = Setting<Duration>.seconds(
        "PREWARM_RECOMMEND_RANDOM_TTL_S", default: 600, in: 1...86_400,
        "lifetime of a default list of random stores")
    public static let databaseTTL = Setting<Duration>.seconds(
        "PREWARM_RECOMMEND_DATABASE_TTL_S", default: 3600, in: 1...86_400,
        "lifetime of a default list rebuilt from PostgreSQL")
    public static let refreshAhead = Setting<Duration>.seconds(
        "PREWARM_RECOMMEND_REFRESH_AHEAD_S", default: 600, in: 0...86_400,
        "in this last stretch of the default list's life, requests refresh it early")
    public static let rebuildWait = Setting<Duration>.milliseconds(
        "PREWARM_RECOMMEND_REBUILD_WAIT_MS", default: 2000, in: 10...60_000,
        "how long a request waits for another pod's rebuild before reading PostgreSQL itself")
    public static let benchConstant = Setting.flag(
        "PREWARM_RECOMMEND_BENCH_CONSTANT", default: false,
        "serve GET /v1/bench/constant (a constant body, for make bench api)")

    public static let all: [SettingDescription] = [
        host.description, port.description, listLength.description, missingTTL.description, randomTTL.description,
        databaseTTL.description, refreshAhead.description, rebuildWait.description, benchConstant.description,
        ScorerSettings.weightStore.description, ScorerSettings.weightCategory.description,
        ScorerSettings.weightZone.description,
    ]
}

/// recommend-api, declared: no consumer group; the "guess you like" read path on its own port.
public struct RecommendAPIWorker: WorkerDefinition {
    public static let name = "recommend-api"
    public static let abstract =
        "the \"guess you like\" store recommendations: cache first, degrading to PostgreSQL instead of failing"
    public static let usesPostgres = true
    public static let migrations = EntryIngestSchema.migrations + StoreRecommendationSchema.migrations
    public static let settings = RecommendAPISettings.all
    /// A read path answers in milliseconds or degrades: Redis may not hold it for seconds.
    public static let defaults = [
        "PREWARM_REDIS_POOL_SIZE": "2", "PREWARM_REDIS_EVENT_LOOPS": "true", "PREWARM_REDIS_CONNECT_TIMEOUT": "0.5",
        "PREWARM_REDIS_COMMAND_TIMEOUT": "0.5", "PREWARM_POSTGRES_CONNECT_TIMEOUT": "2",
    ]

    public let services: [any Service]

    public init(context: WorkerContext) async throws {
        let environment = context.environment
        var options = ReadPathOptions()
        options.listLength = try environment.value(RecommendAPISettings.listLength)
        options.missingTTL = try environment.value(RecommendAPISettings.missingTTL)
        options.randomTTL = try environment.value(RecommendAPISettings.randomTTL)
        options.databaseTTL = try environment.value(RecommendAPISettings.databaseTTL)
        options.refreshAhead = try environment.value(RecommendAPISettings.refreshAhead)
        options.rebuildWait = try environment.value(RecommendAPISettings.rebuildWait)
        options.weights = try ScoringWeights(
            store: try environment.value(ScorerSettings.weightStore),
            category: try environment.value(ScorerSettings.weightCategory),
            zone: try environment.value(ScorerSettings.weightZone))
        let service = RecommendationService(
            cache: RecommendationCache(redis: context.redis), data: StoreData(pool: context.postgres),
            options: options, logger: context.logger, metricsFactory: context.metricsFactory)
        let api = RecommendAPI(
            service: service, benchConstant: try environment.value(RecommendAPISettings.benchConstant))
        let application = Application(
            router: api.router(),
            server: .http1OnEventLoops(),
            configuration: ApplicationConfiguration(
                address: .hostname(
                    try environment.value(RecommendAPISettings.host),
                    port: try environment.value(RecommendAPISettings.port)),
                serverName: "recommend-api"),
            logger: context.logger)
        services = [service, PublicServer(application: application)]
    }
}

/// An HTTP/1 connection handled on its channel's event loop, not in Swift's shared pool: a
/// request, its Redis round trip (on a connection of the same loop) and its answer run on
/// one thread, with no hop between threads.
struct EventLoopHTTP1Channel: ServerChildChannel {
    let http1: HTTP1Channel

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<HTTP1Channel.Value> {
        http1.setup(channel: channel, logger: logger)
    }

    func handle(value: HTTP1Channel.Value, logger: Logger) async {
        await withTaskExecutorPreference(EventLoopExecutor.singleton.executor(of: value.channel.eventLoop)) {
            await http1.handle(value: value, logger: logger)
        }
    }
}

extension HTTPServerBuilder {
    static func http1OnEventLoops() -> HTTPServerBuilder {
        HTTPServerBuilder { responder in EventLoopHTTP1Channel(http1: HTTP1Channel(responder: responder)) }
    }
}

/// The public server as a service that stops with the group (not on its own signals).
struct PublicServer: Service {
    let application: Application<RouterResponder<BasicRequestContext>>

    func run() async throws {
        try await application.run()
    }
}

/// The public routes:
/// - `GET /v1/users/{userId}/store-recommendations`: the user's stores (400 for an id that
///   is not a positive 64-bit integer);
/// - `GET /v1/store-recommendations`: for anonymous users.
/// Both answer `{"source": …, "user_id": …, "stores": [{"id", "name", "category", "zone"}]}`
/// with the header `X-Prewarm-Source`, or 503 with `{"error": …}` when neither Redis nor
/// PostgreSQL can answer.
public struct RecommendAPI: Sendable {
    public let service: RecommendationService
    public let benchConstant: Bool

    public init(service: RecommendationService, benchConstant: Bool = false) {
        self.service = service
        self.benchConstant = benchConstant
    }

    public func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: MetricsMiddleware())
        router.get("/v1/users/:userId/store-recommendations") { _, context -> Response in
            let text = context.parameters.get("userId") ?? ""
            guard let user = Self.userID(text) else {
                let shown = text.count > 40 ? String(text.prefix(40)) + "… (\(text.utf8.count) bytes)" : text
                return Self.json(
                    .badRequest, ["error": "the user id must be a positive 64-bit integer, got '\(shown)'"])
            }
            return await answer(user: user)
        }
        router.get("/v1/store-recommendations") { _, _ -> Response in await answer(user: nil) }
        if benchConstant {
            // The same server answering a body of the same size with no work behind it.
            router.get("/v1/bench/constant") { request, _ -> Response in
                let size = Int(request.uri.queryParameters.get("bytes") ?? "") ?? 256
                return Response(
                    status: .ok, headers: [.contentType: "application/json"],
                    body: ResponseBody(byteBuffer: ByteBuffer(repeating: UInt8(ascii: " "), count: size)))
            }
        }
        return router
    }

    private func answer(user: Int64?) async -> Response {
        do {
            let (source, body) = try await service.recommendJSON(user: user)
            return Response(
                status: .ok,
                headers: [
                    .contentType: "application/json", .cacheControl: "no-store", Self.sourceHeader: source.rawValue,
                ],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
        } catch {
            return Self.json(.serviceUnavailable, ["error": "\(error)"])
        }
    }

    static let sourceHeader = HTTPField.Name("X-Prewarm-Source")!

    /// A user id in its one canonical form: decimal digits without a sign or a leading zero,
    /// from 1 to `Int64.max` (`+5` and `007` are not user 5 and 7).
    static func userID(_ text: String) -> Int64? {
        guard let first = text.utf8.first, first != UInt8(ascii: "0"),
            text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") })
        else { return nil }
        return Int64(text)
    }

    static func json(_ status: HTTPResponse.Status, _ value: some Encodable) -> Response {
        let body = (try? JSONEncoder().encode(value)) ?? Data()
        return Response(
            status: status, headers: [.contentType: "application/json", .cacheControl: "no-store"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }
}
