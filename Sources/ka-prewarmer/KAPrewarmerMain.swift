import KAPrewarm
import PrewarmRuntime

/// `ka-prewarmer`: see `KAPrewarmerWorker`; `ka-prewarmer --help` lists its settings.
@main
enum KAPrewarmerMain {
    static func main() async { await Worker.main(KAPrewarmerWorker.self) }
}
