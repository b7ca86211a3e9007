import EntryIngest
import PrewarmRuntime

/// `entry-ingest`: see `EntryIngestWorker`; `entry-ingest --help` lists its settings.
@main
enum EntryIngestMain {
    static func main() async { await Worker.main(EntryIngestWorker.self) }
}
