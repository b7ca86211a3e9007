import CoreMetrics
import Foundation
import Synchronization

/// The pod's running pre-warms against their deadlines, as three gauges with no per-live
/// label (a label per live stream would grow a series per stream forever; per-live detail is
/// in the task API, `status` and the console):
/// - `prewarm_ka_tasks_running`: pre-warms this pod is writing whose rate is measured;
/// - `prewarm_ka_task_eta_seconds`: the longest time to go among them, at their measured rates;
/// - `prewarm_ka_on_time_until_timestamp_seconds`: the earliest of (deadline - time to go), as
///   a Unix time: the moment after which a pre-warm can no longer finish by its deadline at its
///   measured rate. A time, not a slack: a pre-warm that stops making progress (no more
///   checkpoints) still crosses it as the clock moves, so the rule `< time()` fires for a stall
///   too. 0 while no pre-warm runs (the rule also asks for one running).
final class KADeadlineGauges: Sendable {
    private let running: Gauge
    private let eta: Gauge
    private let onTimeUntil: Gauge
    private let tasks = Mutex<[Int64: (eta: Double, deadline: Date)]>([:])

    init(factory: any MetricsFactory) {
        running = Gauge(label: "prewarm_ka_tasks_running", dimensions: [], factory: factory)
        eta = Gauge(label: "prewarm_ka_task_eta_seconds", dimensions: [], factory: factory)
        onTimeUntil = Gauge(
            label: "prewarm_ka_on_time_until_timestamp_seconds", dimensions: [], factory: factory)
    }

    /// A pre-warm's time to go, measured now.
    func update(live: Int64, eta seconds: Double, deadline: Date) {
        record { $0[live] = (seconds, deadline) }
    }

    /// It stopped (done, failed or handed over).
    func remove(live: Int64) {
        record { $0[live] = nil }
    }

    private func record(_ change: (inout [Int64: (eta: Double, deadline: Date)]) -> Void) {
        let (count, longest, earliest) = tasks.withLock { tasks in
            change(&tasks)
            return (
                tasks.count, tasks.values.map(\.eta).max() ?? 0,
                tasks.values.map { $0.deadline.timeIntervalSince1970 - $0.eta }.min() ?? 0
            )
        }
        running.record(count)
        eta.record(longest)
        onTimeUntil.record(earliest)
    }
}
