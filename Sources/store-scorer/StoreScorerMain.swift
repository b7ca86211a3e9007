import PrewarmRuntime
import StoreRecommendation

/// `store-scorer`: see `StoreScorerWorker`; `store-scorer --help` lists its settings.
@main
enum StoreScorerMain {
    static func main() async { await Worker.main(StoreScorerWorker.self) }
}
