import ArgumentParser
import EntryIngest
import Foundation
import Logging
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
        values["PREWARM_ARCHIVE_AFTER_DAYS"] = afterDays.map(String.init) ?? values["PREWARM_ARCHIVE_AFTER_DAYS"]
        values["PREWARM_ARCHIVE_BATCH_ROWS"] = batchRows.map(String.init) ?? values["PREWARM_ARCHIVE_BATCH_ROWS"]
        values["PREWARM_ARCHIVE_PARALLEL_SHARDS"] =
            parallelShards.map(String.init) ?? values["PREWARM_ARCHIVE_PARALLEL_SHARDS"]
        let reader = EnvironmentReader(values)
        let archiver = EntryArchiver(
            database: try reader.postgres(applicationName: "prewarmctl-archive"), timeZone: try reader.timeZone(),
            settings: try ArchiveSettings(reader), logger: Logger(label: "prewarmctl"))
        let report = try await archiver.run()
        print("cutoff \(report.cutoff.formatted(.iso8601))")
        for shard in report.moved.keys.sorted() where report.moved[shard]! > 0 {
            print("\(EntryIngestSchema.shardTable(shard))  moved \(report.moved[shard]!)")
        }
        print(
            "moved \(report.totalMoved) rows in \(report.batches) batches, \(report.duplicatesDropped) duplicates "
                + "dropped, \(report.retries) retries; partitions created: "
                + (report.partitionsCreated.isEmpty ? "none" : report.partitionsCreated.joined(separator: " ")))
    }
}
