import Foundation
import PrewarmConfiguration
import PrewarmRuntime

/// ka-prewarmer's settings, each declared once.
public enum KASettings {
    public static let minUsers = Setting.integer(
        "PREWARM_KA_MIN_USERS", default: 1000, in: 0...100_000_000,
        "shops with fewer users are not pre-warmed (key accounts only)")
    public static let batchSize = Setting.integer(
        "PREWARM_KA_BATCH_SIZE", default: 500, in: 1...10_000, "users read and written per batch")
    public static let lease = Setting<Duration>.seconds(
        "PREWARM_KA_LEASE_S", default: 300, in: 2...3600,
        "the lease of a live's pre-warm, extended by every batch written")
    public static let tasksPerPod = Setting.integer(
        "PREWARM_KA_TASKS_PER_POD", default: 2, in: 1...32, "pre-warm tasks a pod works at once")
    public static let minWriters = Setting.integer(
        "PREWARM_KA_MIN_WRITERS", default: 1, in: 1...64, "concurrent batch writes of a task, at least")
    public static let maxWriters = Setting.integer(
        "PREWARM_KA_MAX_WRITERS", default: 4, in: 1...64, "concurrent batch writes of a task, at most")
    public static let maxDatabaseRowsPerSecond = Setting.integer(
        "PREWARM_KA_MAX_DB_ROWS_PER_S", default: 0, in: 0...10_000_000,
        "user rows a pod reads per second, at most (0: no cap), to spare PostgreSQL")
    public static let verifyRatio = Setting<Double>.number(
        "PREWARM_KA_VERIFY_RATIO", default: 0.01, in: 0...1,
        "share of the user keys read back before the success flag is set")
    public static let retryAttempts = Setting.integer(
        "PREWARM_KA_RETRY_ATTEMPTS", default: 8, in: 1...100, "tries of a failed batch in the retry table")
    public static let safetyMargin = Setting<Duration>.seconds(
        "PREWARM_KA_SAFETY_MARGIN_S", default: 300, in: 0...86_400,
        "a pre-warm should end this long before its stream starts")

    public static let cacheCheck = Setting<Duration>.seconds(
        "PREWARM_KA_CACHE_CHECK_S", default: 30, in: 1...86_400,
        "how often a pod looks whether Redis lost a pre-warmed live's keys before its stream ended (then it is warmed again)"
    )

    public static let all: [SettingDescription] = [
        minUsers.description, batchSize.description, lease.description, tasksPerPod.description,
        minWriters.description, maxWriters.description, maxDatabaseRowsPerSecond.description, verifyRatio.description,
        retryAttempts.description, safetyMargin.description, cacheCheck.description,
    ]
}

/// ka-prewarmer's settings, read and checked.
public struct KAOptions: Sendable {
    public var minUsers = 1000
    public var batchSize = 500
    public var lease: Duration = .seconds(300)
    public var tasksPerPod = 2
    public var minWriters = 1
    public var maxWriters = 4
    public var maxDatabaseRowsPerSecond = 0
    public var verifyRatio = 0.01
    public var retryAttempts = 8
    public var safetyMargin: Duration = .seconds(300)
    public var cacheCheck: Duration = .seconds(30)
    /// TTL of every key: the stream's end plus this, plus up to `ttlJitter` at random.
    public var ttlAfterEnd: Duration = .seconds(30 * 60)
    public var ttlJitter: Duration = .seconds(10 * 60)

    public init() {}

    public init(_ reader: EnvironmentReader) throws {
        minUsers = try reader.value(KASettings.minUsers)
        batchSize = try reader.value(KASettings.batchSize)
        lease = try reader.value(KASettings.lease)
        tasksPerPod = try reader.value(KASettings.tasksPerPod)
        minWriters = try reader.value(KASettings.minWriters)
        maxWriters = try reader.value(KASettings.maxWriters)
        maxDatabaseRowsPerSecond = try reader.value(KASettings.maxDatabaseRowsPerSecond)
        verifyRatio = try reader.value(KASettings.verifyRatio)
        retryAttempts = try reader.value(KASettings.retryAttempts)
        safetyMargin = try reader.value(KASettings.safetyMargin)
        cacheCheck = try reader.value(KASettings.cacheCheck)
        guard minWriters <= maxWriters else {
            throw ConfigurationError("PREWARM_KA_MIN_WRITERS", "must be at most PREWARM_KA_MAX_WRITERS (\(maxWriters))")
        }
    }
}
