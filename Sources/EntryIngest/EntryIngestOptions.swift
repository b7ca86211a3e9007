import Foundation
import PrewarmConfiguration

/// entry-ingest's own settings, from `PREWARM_*` variables or flags of the same name.
public struct EntryIngestOptions: Sendable, Equatable {
    public var archive: ArchiveSettings
    /// How long the in-memory store directory is trusted before it is reloaded.
    public var storeCacheMaxAge: Duration
    /// How far ahead of this worker's clock an `entered_at` may be.
    public var maximumFutureSkew: TimeInterval

    public static let variables = [
        "PREWARM_ARCHIVE_AFTER_DAYS", "PREWARM_ARCHIVE_BATCH_ROWS", "PREWARM_ARCHIVE_PARALLEL_SHARDS",
        "PREWARM_ARCHIVE_SCHEDULE", "PREWARM_ARCHIVE_MAX_ATTEMPTS", "PREWARM_STORE_CACHE_MAX_AGE_S",
        "PREWARM_MAX_FUTURE_SKEW_S",
    ]

    /// entry-ingest's defaults for runtime settings: it catches up on backlogs, so large
    /// batches. A COPY has a fixed cost in the server, and PostgreSQL builds a tuple slot
    /// per row for the first thousand rows of each COPY (a tenth of its CPU on 1,000-row
    /// COPYs), so a batch should give each of the 16 shards well over a thousand rows. In
    /// `make bench ingest`, 16,000 messages took 30 % less time than 2,000, and 24,000 about
    /// 8 % less than 16,000 (32,000 gained a little more but peaked at 184 MB resident).
    /// One batch at a time measured best: its rows already go to PostgreSQL over two
    /// connections, half the shards each, beside its Redis script.
    public static let runtimeDefaults = ["PREWARM_BATCH_MAX_MESSAGES": "24000"]

    public init(_ reader: EnvironmentReader) throws {
        archive = try ArchiveSettings(reader)
        storeCacheMaxAge = .seconds(try reader.integer("PREWARM_STORE_CACHE_MAX_AGE_S", default: 300, in: 1...86_400))
        maximumFutureSkew = TimeInterval(try reader.integer("PREWARM_MAX_FUTURE_SKEW_S", default: 600, in: 0...86_400))
    }
}
