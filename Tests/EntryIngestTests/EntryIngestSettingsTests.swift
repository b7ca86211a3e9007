import EntryIngest
import PrewarmConfiguration
import PrewarmRuntime
import TestSupport
import Testing

@Suite("entry-ingest's own settings")
struct EntryIngestSettingsTests {
    let base = ["PREWARM_KAFKA_BOOTSTRAP_SERVERS": "k:9092", "PREWARM_POSTGRES_URL": "host=db dbname=prewarm"]

    private func settings(_ environment: [String: String] = [:], _ flags: [String] = []) throws -> WorkerSettings {
        try WorkerSettings.of(EntryIngestWorker.self, environment: base.merging(environment) { $1 }, arguments: flags)
    }

    @Test("defaults, and flags of the same name override the environment")
    func flags() throws {
        let settings = try settings(
            ["PREWARM_ARCHIVE_AFTER_DAYS": "45"], ["--archive-after-days", "60", "--archive-schedule=daily@02:15"])
        let options = try EntryIngestOptions(settings.environment)
        #expect(options.archive.afterDays == 60)
        #expect(options.archive.schedule == .daily(hour: 2, minute: 15))
        #expect(options.archive.batchRows == 5000 && options.archive.parallelShards == 4)
        #expect(try EntryIngestOptions(EnvironmentReader([:])).archive == ArchiveSettings())
    }

    @Test("entry-ingest's own runtime default (polls of 24,000) yields to the environment and flags")
    func runtimeDefaults() throws {
        let defaults = try #require(try settings().loop)
        #expect(defaults.maxBatchMessages == 24_000 && defaults.concurrentBatches == 1)
        let overridden = try #require(
            try settings(["PREWARM_BATCH_CONCURRENCY": "3"], ["--batch-max-messages", "300"]).loop)
        #expect(overridden.maxBatchMessages == 300 && overridden.concurrentBatches == 3)
        #expect(throws: ConfigurationError.self) { try settings(["PREWARM_BATCH_CONCURRENCY": "0"]) }
    }

    @Test("every variable entry-ingest reads is declared, so --help lists it and a bad value stops start-up")
    func everyVariableDeclared() throws {
        let declared = Set(EntryIngestWorker.declaredSettings.map(\.variable))
        for variable in [
            "PREWARM_ARCHIVE_AFTER_DAYS", "PREWARM_ARCHIVE_SCHEDULE", "PREWARM_ARCHIVE_BATCH_ROWS",
            "PREWARM_ARCHIVE_PARALLEL_SHARDS", "PREWARM_ARCHIVE_MAX_ATTEMPTS", "PREWARM_STORE_CACHE_MAX_AGE_S",
            "PREWARM_MAX_FUTURE_SKEW_S", "PREWARM_POSTGRES_URL", "PREWARM_POSTGRES_POOL_SIZE",
            "PREWARM_BATCH_MAX_MESSAGES",
        ] {
            #expect(declared.contains(variable), "\(variable)")
        }
        let help = Worker.help(EntryIngestWorker.self)
        #expect(help.contains("PREWARM_ARCHIVE_SCHEDULE  --archive-schedule  default daily@03:30"))
        #expect(help.contains("PREWARM_BATCH_MAX_MESSAGES  --batch-max-messages  default 24000"))
    }

    @Test("the entry-ingest executable answers --help, and stops at start-up with exit 64 naming a bad value")
    func executable() async throws {
        let (helpStatus, _) = try await TestProcess.run("entry-ingest", ["--help"])
        #expect(helpStatus == 0)
        for (flags, named) in [
            (["--archive-after-days", "0"], "PREWARM_ARCHIVE_AFTER_DAYS"),
            (["--archive-schedule", "weekly"], "PREWARM_ARCHIVE_SCHEDULE"),
            (["--archive-parallel-shards", "17"], "PREWARM_ARCHIVE_PARALLEL_SHARDS"),
            (["--archive-batch-size", "10"], "--archive-batch-size"),
        ] {
            let (status, stderr) = try await TestProcess.run("entry-ingest", flags)
            #expect(status == 64, "\(flags)")
            #expect(stderr.contains(named), "\(stderr)")
        }
    }
}
