import CoreMetrics
import Foundation
import Logging
import Postgres
import PrewarmConfiguration
import PrewarmRuntime

/// How the nightly archive runs.
public struct ArchiveSettings: Sendable, Equatable {
    /// Rows whose `entered_at` is before the start of today (in the time zone) minus this
    /// many days are moved.
    public var afterDays: Int
    /// Rows moved per transaction.
    public var batchRows: Int
    /// Shards worked at once, each on its own connection.
    public var parallelShards: Int
    /// When the scheduled run fires, in the worker's time zone.
    public var schedule: Schedule
    /// A batch that fails for an outage is retried this many times in all, with backoff.
    public var maxAttempts: Int
    public var retryBackoff: Backoff

    public init(
        afterDays: Int = 30, batchRows: Int = 5000, parallelShards: Int = 4,
        schedule: Schedule = .daily(hour: 3, minute: 30), maxAttempts: Int = 8,
        retryBackoff: Backoff = Backoff(initial: .milliseconds(500), maximum: .seconds(30))
    ) {
        self.afterDays = afterDays
        self.batchRows = batchRows
        self.parallelShards = parallelShards
        self.schedule = schedule
        self.maxAttempts = maxAttempts
        self.retryBackoff = retryBackoff
    }

    /// From the declared `PREWARM_ARCHIVE_*` settings.
    public init(_ reader: EnvironmentReader) throws {
        self.init(
            afterDays: try reader.value(EntryIngestSettings.archiveAfterDays),
            batchRows: try reader.value(EntryIngestSettings.archiveBatchRows),
            parallelShards: try reader.value(EntryIngestSettings.archiveParallelShards),
            schedule: try reader.value(EntryIngestSettings.archiveSchedule),
            maxAttempts: try reader.value(EntryIngestSettings.archiveMaxAttempts))
    }
}

/// What one archive run did.
public struct ArchiveReport: Sendable, Equatable {
    /// Rows entered before this moment were moved.
    public var cutoff: Date
    /// Rows moved into the archive, per shard. A batch whose COMMIT succeeded while its
    /// connection broke is moved but not counted (the rows are never moved twice).
    public var moved: [Int: Int] = [:]
    /// Rows removed from a shard because the archive already held their event (a replay
    /// stored before the archive guard existed); never counted twice.
    public var duplicatesDropped = 0
    public var partitionsCreated: [String] = []
    public var batches = 0
    public var retries = 0

    public var totalMoved: Int { moved.values.reduce(0, +) }
}

/// Moves rows older than the cutoff from every shard into `store_entry_archive`, by id
/// cursor in batches. Each batch is one transaction (pick, delete from the shard, insert
/// into the archive), so a crash at any point leaves every row in exactly one place and a
/// rerun carries on. Shards are worked in parallel up to `parallelShards`, each on a
/// connection of the pool; a batch that fails for an outage is retried with backoff; a shard
/// that still fails fails the run, loudly, after the other shards finish.
public struct EntryArchiver: Sendable {
    public let pool: PostgresPool
    public let timeZone: TimeZone
    public let settings: ArchiveSettings
    private let logger: Logger
    private let metrics: ArchiveMetrics

    public init(
        pool: PostgresPool, timeZone: TimeZone, settings: ArchiveSettings, logger: Logger,
        metricsFactory: MetricsFactory = MetricsSystem.factory
    ) {
        self.pool = pool
        self.timeZone = timeZone
        self.settings = settings
        self.logger = logger
        self.metrics = ArchiveMetrics(factory: metricsFactory)
    }

    /// The scheduled job's name (`POST /jobs/entry-archive/trigger` runs it now).
    public static let jobName = "entry-archive"

    /// Advisory lock space shared with `ShardWriter`: a batch holds its shard's lock
    /// exclusively; a writer storing events old enough to be archived holds it shared.
    static let lockSpace: Int32 = 0x7077_6172  // "pwar"

    /// The start of the day `afterDays` before `now`'s day, in the time zone.
    public func cutoff(now: Date) -> Date {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        return calendar.date(byAdding: .day, value: -settings.afterDays, to: calendar.startOfDay(for: now))!
    }

    public func run(now: Date = Date()) async throws -> ArchiveReport {
        let cutoff = cutoff(now: now)
        let started = ContinuousClock.now
        logger.info("archive starting", metadata: ["cutoff": "\(cutoff)", "settings": "\(settings)"])
        var report = ArchiveReport(cutoff: cutoff)
        do {
            report.partitionsCreated = try await withRetry(shard: nil) {
                try await pool.withConnection { connection in
                    // Recorded before any row moves, so writers widen their archive check first.
                    try await connection.query(
                        """
                        INSERT INTO \(EntryIngestSchema.archiveStateTable) AS state (singleton, cutoff) VALUES (true, $1)
                        ON CONFLICT (singleton) DO UPDATE
                        SET cutoff = greatest(state.cutoff, excluded.cutoff), updated_at = now()
                        """, [cutoff])
                    return try await ensurePartitions(connection, before: cutoff)
                }
            }
        } catch {
            metrics.failed()
            logger.critical("archive failed before moving rows", metadata: ["error": "\(error)"])
            throw error
        }

        let shards = Array(0..<EntryIngestSchema.shardCount)
        let outcomes = await concurrentResults(shards, limit: settings.parallelShards) { shard in
            try await pool.withConnection { try await self.archive(shard: shard, on: $0, cutoff: cutoff) }
        }
        var failures: [(Int, Error)] = []
        for (shard, outcome) in zip(shards, outcomes) {
            switch outcome {
            case .success(let totals):
                report.moved[shard] = totals.moved
                report.duplicatesDropped += totals.duplicates
                report.batches += totals.batches
                report.retries += totals.retries
                report.partitionsCreated += totals.partitionsCreated
            case .failure(let error):
                failures.append((shard, error))
            }
        }
        let elapsed = ContinuousClock.now - started
        guard failures.isEmpty else {
            metrics.failed()
            let shards = failures.map(\.0).sorted()
            logger.critical(
                "archive failed; the rows not yet moved stay in their shards and the next run moves them",
                metadata: [
                    "failed_shards": "\(shards)", "error": "\(failures[0].1)", "moved": "\(report.totalMoved)",
                ])
            throw ArchiveFailed(shards: shards, reasons: failures.map { "shard \($0.0): \($0.1)" }, partial: report)
        }
        metrics.succeeded(at: Date())
        logger.info(
            "archive finished",
            metadata: [
                "moved": "\(report.totalMoved)", "duplicates_dropped": "\(report.duplicatesDropped)",
                "batches": "\(report.batches)", "retries": "\(report.retries)",
                "partitions_created": "\(report.partitionsCreated)", "seconds": "\(elapsed)",
            ])
        return report
    }

    // MARK: - Shards

    private struct ShardTotals: Sendable {
        var moved = 0
        var duplicates = 0
        var batches = 0
        var retries = 0
        var partitionsCreated: [String] = []
    }

    private func archive(shard: Int, on connection: PostgresConnection, cutoff: Date) async throws -> ShardTotals {
        let table = EntryIngestSchema.shardTable(shard)
        let move = """
            WITH picked AS (
                SELECT id FROM \(table) WHERE id > $1 AND entered_at < $2 ORDER BY id LIMIT $3 FOR UPDATE),
            moved AS (
                DELETE FROM \(table) t USING picked WHERE t.id = picked.id
                RETURNING t.id, t.event_id, t.user_id, t.store_id, t.category_id, t.zone_id, t.entered_at,
                          t.ingested_at),
            archived AS (
                INSERT INTO \(EntryIngestSchema.archiveTable)
                    (shard, id, event_id, user_id, store_id, category_id, zone_id, entered_at, ingested_at)
                SELECT $4, id, event_id, user_id, store_id, category_id, zone_id, entered_at, ingested_at FROM moved
                ON CONFLICT (event_id, entered_at) DO NOTHING
                RETURNING 1)
            SELECT (SELECT count(*) FROM moved), (SELECT max(id) FROM moved), (SELECT count(*) FROM archived)
            """
        var totals = ShardTotals()
        var cursor: Int64 = 0
        var retries = 0
        var partitionsCreated: [String] = []
        while true {
            let (moved, last, archived) = try await withRetry(shard: shard, retries: &retries) {
                do {
                    return try await connection.transaction { transaction in
                        try await transaction.query(
                            "SELECT pg_advisory_xact_lock($1, $2)", [Self.lockSpace, Int32(shard)])
                        let row = try await transaction.query(move, [cursor, cutoff, settings.batchRows, shard]).first
                        return (row?[0].int ?? 0, row?[1].int64, row?[2].int ?? 0)
                    }
                } catch let error as PostgresError where error.sqlState == "23514" {
                    // No partition for a row: an event older than the oldest month arrived
                    // after the run began. Create its month, then let the batch retry.
                    partitionsCreated += try await ensurePartitions(connection, before: cutoff)
                    throw error
                }
            }
            guard moved > 0, let last else { break }
            totals.batches += 1
            totals.moved += archived
            totals.duplicates += moved - archived
            metrics.moved(archived)
            cursor = last
            logger.debug(
                "archive batch moved", metadata: ["shard": "\(shard)", "rows": "\(moved)", "cursor": "\(cursor)"])
            if moved < settings.batchRows { break }
        }
        totals.retries = retries
        totals.partitionsCreated = partitionsCreated
        return totals
    }

    // MARK: - Partitions

    /// Creates the archive's month partitions from the oldest row still in a shard up to
    /// the cutoff's month; returns the names it created.
    func ensurePartitions(_ connection: PostgresConnection, before cutoff: Date) async throws -> [String] {
        let oldest = (0..<EntryIngestSchema.shardCount).map {
            "(SELECT min(entered_at) FROM \(EntryIngestSchema.shardTable($0)) WHERE entered_at < $1)"
        }
        let row = try await connection.query(
            "SELECT extract(epoch FROM least(\(oldest.joined(separator: ", "))))::float8", [cutoff]
        ).first
        guard let seconds = row?[0].double else { return [] }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let first = Date(timeIntervalSince1970: seconds)
        var month = calendar.date(from: calendar.dateComponents([.year, .month], from: first))!
        var created: [String] = []
        while month < cutoff {
            let next = calendar.date(byAdding: .month, value: 1, to: month)!
            let suffix = LocalDay.month(month, in: timeZone)
            let made = try await connection.query(
                "SELECT prewarm_ensure_archive_partition($1, $2, $3)", [month, next, suffix]
            ).first?[0].bool
            if made == true {
                created.append("\(EntryIngestSchema.archiveTable)_\(suffix)")
                logger.notice("archive partition created", metadata: ["month": "\(suffix)"])
            }
            month = next
        }
        return created
    }

    // MARK: - Retries

    /// Outages (and the missing-partition case) are retried with backoff up to
    /// `maxAttempts`; anything else fails at once.
    private var retryPolicy: RetryPolicy {
        RetryPolicy(backoff: settings.retryBackoff, maxAttempts: settings.maxAttempts) { error in
            Failure.kind(of: error) == .transient || (error as? PostgresError)?.sqlState == "23514"
        }
    }

    private func withRetry<T: Sendable>(shard: Int?, _ body: () async throws -> T) async throws -> T {
        var retries = 0
        return try await withRetry(shard: shard, retries: &retries, body)
    }

    private func withRetry<T: Sendable>(shard: Int?, retries: inout Int, _ body: () async throws -> T) async throws
        -> T
    {
        var count = 0
        defer { retries += count }
        return try await retrying(
            "archive batch of shard \(shard.map(String.init) ?? "-")", policy: retryPolicy, logger: logger,
            onRetry: { _, _ in
                count += 1
                metrics.retried()
            }, body)
    }
}

/// An archive run that could not finish every shard. The rows it did not move are still in
/// their shards; `partial` says what was moved.
public struct ArchiveFailed: Error, CustomStringConvertible {
    public let shards: [Int]
    public let reasons: [String]
    public let partial: ArchiveReport

    public var description: String {
        "archive failed for shards \(shards): \(reasons.joined(separator: "; ")) (moved \(partial.totalMoved) rows)"
    }
}

/// What an alert rule watches: failures, and the time of the last success (alert when it
/// is more than a day old).
struct ArchiveMetrics: Sendable {
    let rows: Counter
    let failures: Counter
    let retries: Counter
    let lastSuccess: Gauge

    init(factory: MetricsFactory) {
        rows = Counter(label: "prewarm_archive_rows_moved_total", dimensions: [], factory: factory)
        failures = Counter(label: "prewarm_archive_failures_total", dimensions: [], factory: factory)
        retries = Counter(label: "prewarm_archive_retries_total", dimensions: [], factory: factory)
        lastSuccess = Gauge(label: "prewarm_archive_last_success_timestamp_seconds", dimensions: [], factory: factory)
    }

    func moved(_ count: Int) { rows.increment(by: count) }
    func failed() { failures.increment() }
    func retried() { retries.increment() }
    func succeeded(at date: Date) { lastSuccess.record(date.timeIntervalSince1970) }
}
