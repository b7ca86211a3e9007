import CoreMetrics
import Foundation
import Logging
import Postgres
import Redis
import Synchronization

/// Runs per outcome and their durations, counted once per run when its outcome settles:
/// `prewarm_job_runs_total{job,outcome}`, `prewarm_job_run_duration_seconds{job}`.
final class JobRunMetrics: Sendable {
    private let runs: MetricHandles<LabelPair, Counter>
    private let durations: MetricHandles<String, CoreMetrics.Timer>

    init(factory: any MetricsFactory) {
        runs = MetricHandles { key in
            Counter(
                label: "prewarm_job_runs_total", dimensions: [("job", key.first), ("outcome", key.second)],
                factory: factory)
        }
        durations = MetricHandles { job in
            CoreMetrics.Timer(label: "prewarm_job_run_duration_seconds", dimensions: [("job", job)], factory: factory)
        }
    }

    func ended(_ job: String, _ state: JobRunState, seconds: Double?) {
        runs[LabelPair(job, state.rawValue)].increment()
        guard let seconds else { return }
        durations[job].recordNanoseconds(Int64(seconds * 1e9))
    }
}
