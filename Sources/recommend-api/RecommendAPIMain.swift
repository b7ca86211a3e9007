import PrewarmRuntime
import StoreRecommendation

/// `recommend-api`: see `RecommendAPIWorker`; `recommend-api --help` lists its settings.
@main
enum RecommendAPIMain {
    static func main() async { await Worker.main(RecommendAPIWorker.self) }
}
