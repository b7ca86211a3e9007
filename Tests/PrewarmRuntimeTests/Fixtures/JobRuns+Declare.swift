import PrewarmRuntime

extension JobRuns {
    /// A job declared with only its finish step, as a test without a scheduler needs it.
    func declare(_ job: String, onFinished hook: @escaping @Sendable (JobRunProgress) async throws -> Void) {
        declare([
            ScheduledJob(
                name: job, schedule: .daily(hour: 0, minute: 0), work: .inPlace { _, _ in }, onFinished: hook)
        ])
    }
}

/// A batch handler for runs whose batches no consumer works in the test.
struct NoBatches: JobBatchHandler {
    func work(_ batch: JobBatch) async throws -> BatchResult { BatchResult(itemsDone: 0) }
}
