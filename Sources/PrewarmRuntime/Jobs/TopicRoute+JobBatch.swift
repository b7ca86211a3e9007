import Kafka
import PrewarmConfiguration

extension TopicRoute {
    /// The route of a batch topic: every message is a `JobBatch` worked by `handler`, up to
    /// `concurrency` batches at once, and recorded in its run's progress.
    public init(
        batchesOf spec: TopicSpec, runs: JobRuns, concurrency: Int = 1, handler: some JobBatchHandler
    ) {
        self.init(spec, handler: JobBatchTopicHandler(runs: runs, handler: handler, concurrency: concurrency))
    }

    /// `init(batchesOf:...)` for a topic outside the catalog (its dead letters go to
    /// `<topic>.dlq`).
    public init(batchesOfTopic topic: String, runs: JobRuns, concurrency: Int = 1, handler: some JobBatchHandler) {
        self.init(topic: topic, handler: JobBatchTopicHandler(runs: runs, handler: handler, concurrency: concurrency))
    }
}
