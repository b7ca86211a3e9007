import PrewarmConfiguration

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
    public static let detailsNearCache = Setting<Duration>.milliseconds(
        "PREWARM_RECOMMEND_NEAR_CACHE_MS", default: 1000, in: 0...60_000,
        "store details remembered in the process this long (the personal path then reads Redis once); 0: off")
    public static let benchConstant = Setting.flag(
        "PREWARM_RECOMMEND_BENCH_CONSTANT", default: false,
        "serve GET /v1/bench/constant (a constant body, for make bench api)")

    public static let all: [SettingDescription] = [
        host.description, port.description, listLength.description, missingTTL.description, randomTTL.description,
        databaseTTL.description, refreshAhead.description, rebuildWait.description, detailsNearCache.description,
        benchConstant.description,
        ScorerSettings.weightStore.description, ScorerSettings.weightCategory.description,
        ScorerSettings.weightZone.description,
    ]
}

/// recommend-api's options, read once from its settings (a bad value stops start-up naming it).
public struct RecommendAPIOptions: Sendable {
    public var readPath: ReadPathOptions
    public var host: String
    public var port: Int
    public var benchConstant: Bool

    public init(_ environment: EnvironmentReader) throws {
        readPath = ReadPathOptions()
        readPath.listLength = try environment.value(RecommendAPISettings.listLength)
        readPath.missingTTL = try environment.value(RecommendAPISettings.missingTTL)
        readPath.randomTTL = try environment.value(RecommendAPISettings.randomTTL)
        readPath.databaseTTL = try environment.value(RecommendAPISettings.databaseTTL)
        readPath.refreshAhead = try environment.value(RecommendAPISettings.refreshAhead)
        readPath.rebuildWait = try environment.value(RecommendAPISettings.rebuildWait)
        readPath.detailsNearCache = try environment.value(RecommendAPISettings.detailsNearCache)
        readPath.weights = try ScoringWeights(
            store: try environment.value(ScorerSettings.weightStore),
            category: try environment.value(ScorerSettings.weightCategory),
            zone: try environment.value(ScorerSettings.weightZone))
        host = try environment.value(RecommendAPISettings.host)
        port = try environment.value(RecommendAPISettings.port)
        benchConstant = try environment.value(RecommendAPISettings.benchConstant)
    }
}
