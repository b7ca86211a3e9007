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
        let postgres = try context.postgres
        let options = try RecommendAPIOptions(context.environment)
        let service = RecommendationService(
            cache: RecommendationCache(redis: context.redis), data: StoreData(pool: postgres),
            options: options.readPath, logger: context.logger, metricsFactory: context.metricsFactory)
        let api = RecommendAPI(service: service, benchConstant: options.benchConstant)
        // Hummingbird's Application is a Service: it runs and stops with the worker's group.
        let application = Application(
            router: api.router(),
            server: .http1OnEventLoops(),
            configuration: ApplicationConfiguration(
                address: .hostname(options.host, port: options.port), serverName: "recommend-api"),
            logger: context.logger)
        services = [service, application]
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
