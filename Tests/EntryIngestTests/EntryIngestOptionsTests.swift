import EntryIngest
import PrewarmConfiguration
import PrewarmRuntime
import TestSupport
import Testing

@Suite("entry-ingest's own settings")
struct EntryIngestOptionsTests {
    @Test("defaults, and flags of the same name override the environment")
    func flags() throws {
        let base = ["PREWARM_KAFKA_BOOTSTRAP_SERVERS": "k:9092", "PREWARM_REDIS_HOST": "r"]
        let settings = try WorkerSettings(
            worker: "entry-ingest", group: "entry-ingest",
            environment: base.merging(["PREWARM_ARCHIVE_AFTER_DAYS": "45"]) { $1 },
            arguments: ["--archive-after-days", "60", "--archive-schedule=daily@02:15"], needsPostgres: false,
            workerVariables: EntryIngestOptions.variables)
        let options = try EntryIngestOptions(settings.environment)
        #expect(options.archive.afterDays == 60)
        #expect(options.archive.schedule == .daily(hour: 2, minute: 15))
        #expect(options.archive.batchRows == 5000 && options.archive.parallelShards == 4)
        #expect(try EntryIngestOptions(EnvironmentReader([:])).archive == ArchiveSettings())
    }

    @Test("entry-ingest's own runtime defaults (batches of 16,000) yield to the environment and flags")
    func runtimeDefaults() throws {
        let base = ["PREWARM_KAFKA_BOOTSTRAP_SERVERS": "k:9092", "PREWARM_REDIS_HOST": "r"]
        func settings(_ environment: [String: String], _ flags: [String] = []) throws -> WorkerSettings {
            try WorkerSettings(
                worker: "entry-ingest", group: "entry-ingest", environment: base.merging(environment) { $1 },
                arguments: flags, needsPostgres: false, workerVariables: EntryIngestOptions.variables,
                workerDefaults: EntryIngestOptions.runtimeDefaults)
        }
        let defaults = try settings([:])
        #expect(defaults.loop.maxBatchMessages == 24_000 && defaults.loop.concurrentBatches == 1)
        let overridden = try settings(["PREWARM_BATCH_CONCURRENCY": "3"], ["--batch-max-messages", "300"])
        #expect(overridden.loop.maxBatchMessages == 300 && overridden.loop.concurrentBatches == 3)
        #expect(throws: ConfigurationError.self) { try settings(["PREWARM_BATCH_CONCURRENCY": "0"]) }
    }

    @Test("the entry-ingest executable stops at start-up with exit 64, naming a bad value of its own")
    func badValueStopsTheWorker() async throws {
        for (flags, named) in [
            (["--archive-after-days", "0"], "PREWARM_ARCHIVE_AFTER_DAYS"),
            (["--archive-schedule", "weekly"], "PREWARM_ARCHIVE_SCHEDULE"),
            (["--archive-parallel-shards", "17"], "PREWARM_ARCHIVE_PARALLEL_SHARDS"),
        ] {
            let (status, stderr) = try await TestProcess.run("entry-ingest", flags)
            #expect(status == 64, "\(flags)")
            #expect(stderr.contains(named), "\(stderr)")
        }
    }
}
