import Foundation
import PrewarmConfiguration
import PrewarmRuntime

/// entry-ingest's own settings, each declared once.
public enum EntryIngestSettings {
    public static let archiveAfterDays = Setting.integer(
        "PREWARM_ARCHIVE_AFTER_DAYS", default: 30, in: 1...3650,
        "rows entered before the start of today less this many days are archived")
    public static let archiveSchedule = Setting<Schedule>.schedule(
        "PREWARM_ARCHIVE_SCHEDULE", default: .daily(hour: 3, minute: 30), "when the archive runs")
    public static let archiveBatchRows = Setting.integer(
        "PREWARM_ARCHIVE_BATCH_ROWS", default: 5000, in: 1...100_000, "rows moved per archive transaction")
    public static let archiveParallelShards = Setting.integer(
        "PREWARM_ARCHIVE_PARALLEL_SHARDS", default: 4, in: 1...EntryIngestSchema.shardCount,
        "shards archived at once, each on its own connection")
    public static let archiveMaxAttempts = Setting.integer(
        "PREWARM_ARCHIVE_MAX_ATTEMPTS", default: 8, in: 1...100, "tries per archive batch on an outage")
    public static let storeCacheMaxAge = Setting<Duration>.seconds(
        "PREWARM_STORE_CACHE_MAX_AGE_S", default: 300, in: 1...86_400, "the in-memory stores are reloaded after this")
    public static let maxFutureSkew = Setting<Duration>.seconds(
        "PREWARM_MAX_FUTURE_SKEW_S", default: 600, in: 0...86_400,
        "how far ahead of this worker's clock entered_at may be")

    public static let activityCheck = Setting<Duration>.seconds(
        "PREWARM_ACTIVITY_CHECK_S", default: 60, in: 1...86_400,
        "how often a pod looks whether Redis lost the activity (then it is rebuilt from the log)")
    public static let activityReconcileSchedule = Setting<Schedule>.schedule(
        "PREWARM_ACTIVITY_RECONCILE_SCHEDULE", default: .daily(hour: 1, minute: 30),
        "when the window's day sets are checked against the log and a day that differs is rebuilt")

    public static let all: [SettingDescription] = [
        archiveAfterDays.description, archiveSchedule.description, archiveBatchRows.description,
        archiveParallelShards.description, archiveMaxAttempts.description, storeCacheMaxAge.description,
        maxFutureSkew.description, activityCheck.description, activityReconcileSchedule.description,
    ]
}

/// entry-ingest's settings, read and checked.
public struct EntryIngestOptions: Sendable, Equatable {
    public var archive: ArchiveSettings
    /// How long the in-memory store directory is trusted before it is reloaded.
    public var storeCacheMaxAge: Duration
    /// How far ahead of this worker's clock an `entered_at` may be.
    public var maximumFutureSkew: TimeInterval
    public var activityCheck: Duration
    public var activityReconcileSchedule: Schedule

    public init(_ reader: EnvironmentReader) throws {
        archive = try ArchiveSettings(reader)
        storeCacheMaxAge = try reader.value(EntryIngestSettings.storeCacheMaxAge)
        maximumFutureSkew = try reader.value(EntryIngestSettings.maxFutureSkew).seconds
        activityCheck = try reader.value(EntryIngestSettings.activityCheck)
        activityReconcileSchedule = try reader.value(EntryIngestSettings.activityReconcileSchedule)
    }
}
