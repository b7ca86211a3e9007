import BookRecPush
import PrewarmRuntime

/// `push-producer`: see `PushProducerWorker`; `push-producer --help` lists its settings.
@main
enum PushProducerMain {
    static func main() async { await Worker.main(PushProducerWorker.self) }
}
