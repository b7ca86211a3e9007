import CoreMetrics

/// What the scheduler counts: batches produced, fire errors (runs are counted by `JobRuns`
/// when their outcome settles). Handles made once per job.
struct SchedulerMetrics: Sendable {
    private let fireErrors: MetricHandles<String, Counter>
    private let batchesProduced: MetricHandles<String, Counter>

    init(factory: any MetricsFactory) {
        fireErrors = MetricHandles { job in
            Counter(label: "prewarm_job_fire_errors_total", dimensions: [("job", job)], factory: factory)
        }
        batchesProduced = MetricHandles { job in
            Counter(label: "prewarm_job_batches_produced_total", dimensions: [("job", job)], factory: factory)
        }
    }

    func fireError(_ job: String) { fireErrors[job].increment() }

    func batchProduced(_ job: String) { batchesProduced[job].increment() }
}
