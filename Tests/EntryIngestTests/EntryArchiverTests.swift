import EntryIngest
import Foundation
import Logging
import MetricsTestKit
import Postgres
import TestSupport
import Testing

@Suite("Nightly archive of the entry log on PostgreSQL", .closesResources)
struct EntryArchiverTests {
    let shanghai = TimeZone(identifier: "Asia/Shanghai")!

    /// `perShard` rows in every shard, row g entered `g * spacing` before `now`; returns the
    /// times of all rows.
    @discardableResult
    func seed(_ db: IngestDatabase, perShard: Int, spacing: TimeInterval, before now: Date) async throws -> [Date] {
        for shard in 0..<EntryIngestSchema.shardCount {
            try await db.connection.query(
                """
                INSERT INTO \(EntryIngestSchema.shardTable(shard))
                    (event_id, user_id, store_id, category_id, zone_id, entered_at)
                SELECT gen_random_uuid(), $1 + 16 * g, g % 20 + 1, g % 4, g % 3,
                       $2::timestamptz - make_interval(secs => g * $3::float8)
                FROM generate_series(1, $4) g
                """, [shard, now, spacing, perShard])
        }
        return (1...perShard).flatMap { g in
            Array(repeating: now.addingTimeInterval(-Double(g) * spacing), count: EntryIngestSchema.shardCount)
        }
    }

    func archiver(_ db: IngestDatabase, _ settings: ArchiveSettings, applicationName: String? = nil) throws
        -> EntryArchiver
    {
        var configuration = db.configuration
        if let applicationName { configuration.applicationName = applicationName }
        let pool = PostgresPool(configuration, maximum: settings.parallelShards + 1)
        closeAfterTest { await pool.close() }
        return EntryArchiver(pool: pool, timeZone: shanghai, settings: settings, logger: Logger(label: "test.archive"))
    }

    @Test("rows older than the cutoff move into month partitions in batches, each exactly once; a rerun moves nothing")
    func movesOldRows() async throws {
        let db = try await IngestDatabase.make()
        let now = ISO8601DateFormatter().date(from: "2026-11-21T04:00:00Z")!  // noon in Shanghai
        let times = try await seed(db, perShard: 60, spacing: 36 * 3600, before: now)
        let archiver = try archiver(db, ArchiveSettings(afterDays: 30, batchRows: 7, parallelShards: 3))

        // 30 days before the start of the 21st in Shanghai: 2026-10-22 00:00 +08.
        let cutoff = archiver.cutoff(now: now)
        #expect(cutoff == ISO8601DateFormatter().date(from: "2026-10-21T16:00:00Z")!)
        let old = times.filter { $0 < cutoff }.count
        #expect(old > 0 && old < times.count)

        let report = try await archiver.run(now: now)
        #expect(report.totalMoved == old)
        #expect(report.moved.count == 16 && Set(report.moved.values).count == 1, "every shard worked, evenly")
        #expect(report.batches >= old / 7, "moved in batches of at most 7 rows")
        #expect(
            report.partitionsCreated == ["202608", "202609", "202610"].map { "store_entry_archive_\($0)" },
            "a partition per month from the oldest row to the cutoff, in Shanghai time")
        #expect(try await db.archiveRows() == old)
        #expect(try await db.shardRows() == times.count - old)
        let counts = try await db.eventCounts()
        #expect(counts.count == times.count && counts.values.allSatisfy { $0 == 1 })

        // Each row sits in its own month's partition and keeps its shard and id.
        let misplaced = try await db.connection.query(
            """
            SELECT count(*) FROM store_entry_archive
            WHERE tableoid::regclass::text <> 'store_entry_archive_' || to_char(entered_at AT TIME ZONE $1, 'YYYYMM')
               OR shard <> user_id % 16 OR entered_at >= $2
            """, [shanghai.identifier, cutoff])
        #expect(misplaced.first?[0].int == 0)
        let stillOld = try await db.connection.query(
            "SELECT count(*) FROM store_entry_log_05 WHERE entered_at < $1", [cutoff])
        #expect(stillOld.first?[0].int == 0)

        let again = try await archiver.run(now: now)
        #expect(again.totalMoved == 0 && again.partitionsCreated.isEmpty)
        #expect(try await db.archiveRows() == old)
        await db.drop()
    }

    @Test("an event replayed after its row was archived is not stored again; a late event gets its own month")
    func replayAfterArchive() async throws {
        let db = try await IngestDatabase.make()
        let now = Date()
        try await seed(db, perShard: 20, spacing: 5 * 86_400, before: now)
        let archiver = try archiver(db, ArchiveSettings(afterDays: 30, batchRows: 100, parallelShards: 4))
        let first = try await archiver.run(now: now)
        #expect(first.totalMoved > 0)

        // Events exactly as upstream would send them again, read back from the archive.
        let archived = try await db.connection.query(
            """
            SELECT event_id::text, user_id, store_id,
                   to_char(entered_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
            FROM store_entry_archive LIMIT 5
            """)
        let store = Store(id: 1, categoryID: 1, zoneID: 1, isOpen: true)
        let replayed = archived.rows.map { row in
            (
                event: StoreEntryEvent(
                    eventID: UUID(hexText: row[0].string!)!, userID: row[1].int64!, storeID: row[2].int64!,
                    enteredAt: RFC3339.parse(row[3].string!)!),
                store: store
            )
        }
        let writer = ShardWriter(database: db.connection, archiveAfterDays: 30)
        #expect(replayed.count == 5)
        #expect(try await writer.write(replayed) == 0, "archived events are not stored a second time")

        // A first-time event from half a year ago: stored, then archived into a new month.
        let late = StoreEntryEvent(
            eventID: UUID(), userID: 7, storeID: 1,
            enteredAt: now.addingTimeInterval(-200 * 86_400))
        #expect(try await writer.write([(late, store)]) == 1)
        let second = try await archiver.run(now: now)
        #expect(second.totalMoved == 1)
        #expect(second.partitionsCreated.count >= 1, "the late event's month did not exist yet")
        let counts = try await db.eventCounts()
        #expect(counts.count == 16 * 20 + 1 && counts.values.allSatisfy { $0 == 1 })
        await db.drop()
    }

    @Test("connections cut mid-run: batches are retried with backoff and every row still moves exactly once")
    func outageIsRetried() async throws {
        let db = try await IngestDatabase.make()
        let now = Date()
        let times = try await seed(db, perShard: 400, spacing: 3 * 3600, before: now)
        let name = "archive-\(db.schema)"
        var settings = ArchiveSettings(afterDays: 30, batchRows: 5, parallelShards: 4)
        settings.retryBackoff = .init(initial: .milliseconds(20), maximum: .milliseconds(200))
        let archiver = try archiver(db, settings, applicationName: name)
        let run = Task { try await archiver.run(now: now) }

        try await eventually("the archive to start moving rows") { try await db.archiveRows() > 0 }
        let cut = try await db.connection.query(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
            [name])
        #expect((cut.first?[0].int ?? 0) >= 1, "the archiver's connections were cut")
        let report = try await run.value
        #expect(report.retries >= 1)
        let old = times.filter { $0 < archiver.cutoff(now: now) }.count
        #expect(try await db.archiveRows() == old, "every old row archived")
        // A batch whose COMMIT went through just as its connection was cut is not counted.
        #expect(report.totalMoved <= old && report.totalMoved >= old - settings.batchRows * 4)
        let counts = try await db.eventCounts()
        #expect(counts.count == times.count && counts.values.allSatisfy { $0 == 1 })
        await db.drop()
    }

    @Test("prewarmctl archive killed with SIGKILL mid-run, then rerun: every row exactly once across shard and archive")
    func killedMidRun() async throws {
        let db = try await IngestDatabase.make()
        let now = Date()
        let times = try await seed(db, perShard: 800, spacing: 3 * 3600, before: now)
        let configuration = db.configuration
        let process = try TestProcess.start(
            "prewarmctl", ["archive", "--batch-rows", "5", "--parallel-shards", "4"],
            environment: [
                "PREWARM_POSTGRES_URL": configuration.conninfo, "PREWARM_POSTGRES_PASSWORD": configuration.password!,
                "PREWARM_ARCHIVE_AFTER_DAYS": "30", "PREWARM_LOG_LEVEL": "warning",
            ])
        try await eventually("the archive to start moving rows") { try await db.archiveRows() >= 200 }
        process.kill()

        let archiver = try archiver(db, ArchiveSettings(afterDays: 30, batchRows: 500, parallelShards: 4))
        let cutoff = archiver.cutoff(now: now)
        let old = times.filter { $0 < cutoff }.count
        // Wait for the server to roll back the dead process's open batches, then look.
        try await eventually("the killed archiver's sessions to end") {
            try await db.connection.query(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", ["prewarmctl-archive"]
            ).first?[0].int == 0
        }
        let movedBeforeKill = try await db.archiveRows()
        #expect(movedBeforeKill < old, "killed mid-run, with rows still to move")
        #expect(try await db.archiveRows() + db.shardRows() == times.count, "no row lost or doubled by the kill")

        let rerun = try await archiver.run(now: now)
        #expect(rerun.totalMoved == old - movedBeforeKill)
        #expect(try await db.archiveRows() == old)
        let counts = try await db.eventCounts()
        #expect(counts.count == times.count && counts.values.allSatisfy { $0 == 1 })
        await db.drop()
    }

    @Test(
        "a run that cannot finish fails loudly: counted for alerts, rows left in their shards, the next run moves them")
    func failureIsAlerted() async throws {
        let db = try await IngestDatabase.make()
        let now = ISO8601DateFormatter().date(from: "2026-11-21T04:00:00Z")!
        let times = try await seed(db, perShard: 30, spacing: 36 * 3600, before: now)
        // A plain table where October's partition belongs: the archive cannot take October.
        try await db.connection.query("CREATE TABLE store_entry_archive_202610 (x int)")
        let metrics = TestMetrics()
        var settings = ArchiveSettings(afterDays: 30, batchRows: 10, parallelShards: 4, maxAttempts: 2)
        settings.retryBackoff = .init(initial: .milliseconds(10), maximum: .milliseconds(20))
        let pool = PostgresPool(db.configuration, maximum: 5)
        closeAfterTest { await pool.close() }
        let archiver = EntryArchiver(
            pool: pool, timeZone: shanghai, settings: settings, logger: Logger(label: "test.archive"),
            metricsFactory: metrics)
        let failure = await #expect(throws: ArchiveFailed.self) { try await archiver.run(now: now) }
        #expect(failure?.shards.isEmpty == false)
        #expect(try metrics.expectCounter("prewarm_archive_failures_total").totalValue == 1)
        #expect(try metrics.expectGauge("prewarm_archive_last_success_timestamp_seconds").lastValue == nil)
        #expect(try await db.archiveRows() + db.shardRows() == times.count, "nothing lost")
        #expect(try await db.eventCounts().values.allSatisfy { $0 == 1 }, "nothing doubled")

        try await db.connection.query("DROP TABLE store_entry_archive_202610")
        let report = try await archiver.run(now: now)
        #expect(
            report.totalMoved + (failure?.partial.totalMoved ?? 0)
                == times.filter { $0 < archiver.cutoff(now: now) }.count)
        #expect(try metrics.expectGauge("prewarm_archive_last_success_timestamp_seconds").lastValue ?? 0 > 0)
        #expect(try metrics.expectCounter("prewarm_archive_failures_total").totalValue == 1)
        await db.drop()
    }

    @Test(
        "an archive run with fewer days than the writers' setting widens their check: replays are still not stored twice"
    )
    func shorterArchiveWidensTheGuard() async throws {
        let db = try await IngestDatabase.make()
        let now = Date()
        try await seed(db, perShard: 10, spacing: 86_400, before: now)  // 1 to 10 days old
        let archiver = try archiver(db, ArchiveSettings(afterDays: 5, batchRows: 100, parallelShards: 4))
        #expect(try await archiver.run(now: now).totalMoved > 0)
        let archived = try await db.connection.query(
            """
            SELECT event_id::text, user_id, store_id,
                   to_char(entered_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
            FROM store_entry_archive
            """)
        let store = Store(id: 1, categoryID: 1, zoneID: 1)
        let replayed = archived.rows.map { row in
            (
                event: StoreEntryEvent(
                    eventID: UUID(hexText: row[0].string!)!, userID: row[1].int64!, storeID: row[2].int64!,
                    enteredAt: RFC3339.parse(row[3].string!)!), store: store
            )
        }
        let writer = ShardWriter(database: db.connection, archiveAfterDays: 30)
        #expect(try await writer.write(replayed) == 0, "archived 5+ days ago by the operator's run: not stored again")
        #expect(try await db.eventCounts().values.allSatisfy { $0 == 1 })
        await db.drop()
    }
}
