import CoreMetrics
import Foundation
import Kafka
import Logging
import Postgres
import ServiceLifecycle

/// What the scheduler counts: batches produced, fire errors (runs are counted by `JobRuns`
/// when their outcome settles).
struct SchedulerMetrics: Sendable {
    let factory: any MetricsFactory

    func fireError(_ job: String) {
        Counter(label: "prewarm_job_fire_errors_total", dimensions: [("job", job)], factory: factory).increment()
    }

    func batchProduced(_ job: String) {
        Counter(label: "prewarm_job_batches_produced_total", dimensions: [("job", job)], factory: factory).increment()
    }
}
