import ArgumentParser
import EntryIngest
import Foundation
import Logging
import Postgres
import PrewarmConfiguration

struct ArchiveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "archive",
        abstract: "Move entry-log rows older than the cutoff into store_entry_archive now (what entry-ingest's "
            + "nightly entry-archive job does); safe to rerun after a crash.",
        discussion: """
            Reads PREWARM_POSTGRES_URL, PREWARM_POSTGRES_PASSWORD, PREWARM_TIMEZONE and the PREWARM_ARCHIVE_* \
            variables; the flags override them.
            """)

    @Option(help: "Move rows entered before the start of today minus this many days (PREWARM_ARCHIVE_AFTER_DAYS).")
    var afterDays: Int?

    @Option(help: "Rows per transaction (PREWARM_ARCHIVE_BATCH_ROWS).")
    var batchRows: Int?

    @Option(help: "Shards worked at once, each on its own connection (PREWARM_ARCHIVE_PARALLEL_SHARDS).")
    var parallelShards: Int?

    func run() async throws {
        var values = ProcessInfo.processInfo.environment
        values[EntryIngestSettings.archiveAfterDays.variable] =
            afterDays.map(String.init) ?? values[EntryIngestSettings.archiveAfterDays.variable]
        values[EntryIngestSettings.archiveBatchRows.variable] =
            batchRows.map(String.init) ?? values[EntryIngestSettings.archiveBatchRows.variable]
        values[EntryIngestSettings.archiveParallelShards.variable] =
            parallelShards.map(String.init) ?? values[EntryIngestSettings.archiveParallelShards.variable]
        let reader = EnvironmentReader(values)
        try reader.check(EntryIngestSettings.all)
        let settings = try ArchiveSettings(reader)
        let pool = PostgresPool(
            try reader.postgres(applicationName: "prewarmctl-archive"), maximum: settings.parallelShards + 1)
        let archiver = EntryArchiver(
            pool: pool, timeZone: try reader.timeZone(), settings: settings, logger: Logger(label: "prewarmctl"))
        let report: ArchiveReport
        do {
            report = try await archiver.run()
        } catch {
            await pool.close()
            throw error
        }
        await pool.close()
        print("cutoff \(RFC3339.display(report.cutoff))")
        for shard in report.moved.keys.sorted() where report.moved[shard]! > 0 {
            print("\(EntryIngestSchema.shardTable(shard))  moved \(report.moved[shard]!)")
        }
        print(
            "moved \(report.totalMoved) rows in \(report.batches) batches, \(report.duplicatesDropped) duplicates "
                + "dropped, \(report.retries) retries; partitions created: "
                + (report.partitionsCreated.isEmpty ? "none" : report.partitionsCreated.joined(separator: " ")))
    }
}
