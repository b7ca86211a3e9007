import CoreMetrics
import Foundation
import Logging
import Postgres
import Redis
import Synchronization

/// Runs per outcome and their durations, counted once per run when its outcome settles:
/// `prewarm_job_runs_total{job,outcome}`, `prewarm_job_run_duration_seconds{job}`.
final class JobRunMetrics: Sendable {
    let factory: any MetricsFactory
    private let counters = Mutex<[String: Counter]>([:])
    private let timers = Mutex<[String: CoreMetrics.Timer]>([:])

    init(factory: any MetricsFactory) {
        self.factory = factory
    }

    func ended(_ job: String, _ state: JobRunState, seconds: Double?) {
        let counter = counters.withLock { counters in
            let key = job + "|" + state.rawValue
            if let counter = counters[key] { return counter }
            let counter = Counter(
                label: "prewarm_job_runs_total", dimensions: [("job", job), ("outcome", state.rawValue)],
                factory: factory)
            counters[key] = counter
            return counter
        }
        counter.increment()
        guard let seconds else { return }
        let timer = timers.withLock { timers in
            if let timer = timers[job] { return timer }
            let timer = CoreMetrics.Timer(
                label: "prewarm_job_run_duration_seconds", dimensions: [("job", job)], factory: factory)
            timers[job] = timer
            return timer
        }
        timer.recordNanoseconds(Int64(seconds * 1e9))
    }
}
