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
    /// batches. A COPY has a fixed cost in the server, so a batch should give each of the 16
    /// shards about a thousand rows: 16,000 messages took 30 % less time than 2,000 in
    /// `make bench ingest` (one PostgreSQL backend alone spent 11 s on 125-row COPYs of a
    /// million rows and 7 s on 1,000-row ones). One batch at a time measured best: its rows
    /// already go to PostgreSQL over two connections, half the shards each, beside its Redis
    /// script.
    public static let runtimeDefaults = ["PREWARM_BATCH_MAX_MESSAGES": "16000"]

    public init(_ reader: EnvironmentReader) throws {
        archive = try ArchiveSettings(reader)
        storeCacheMaxAge = .seconds(try reader.integer("PREWARM_STORE_CACHE_MAX_AGE_S", default: 300, in: 1...86_400))
        maximumFutureSkew = TimeInterval(try reader.integer("PREWARM_MAX_FUTURE_SKEW_S", default: 600, in: 0...86_400))
    }
}
