import CoreMetrics
import Foundation
import Kafka
import Logging
import Postgres
import ServiceLifecycle

/// One scheduled job: when it fires, what a missed fire does, by when a run must be done,
/// and its work: a body run in place by the winning pod, or a fan-out of batches that every
/// pod of the consumer group then works.
public struct ScheduledJob: Sendable {
    /// What a pod does when it finds the latest period of a job never run (every pod was
    /// down at fire time). Only the latest period is ever caught up.
    public enum CatchUp: Sendable, Equatable {
        /// Run it once, however late.
        case once
        /// Leave it.
        case skip
        /// Run it if the fire was at most this long ago; later, skip it and alert.
        case within(Duration)
    }

    public enum Work: Sendable {
        case inPlace(@Sendable (JobRunInfo, JobRunLease) async throws -> Void)
        case fanOut(FanOut)
    }

    /// Another job's run that a run of this one waits for when it is under way: an hour's
    /// push waits for its day's pre-warm (both caught up at once after an outage).
    public struct After: Sendable {
        public let job: String
        /// The other job's period for a period of this one.
        public let period: @Sendable (String) -> String
        /// The longest a run waits; then it goes on, with an alert.
        public let atMost: Duration

        public init(job: String, period: @escaping @Sendable (String) -> String, atMost: Duration) {
            self.job = job
            self.period = period
            self.atMost = atMost
        }
    }

    public let name: String
    public let schedule: Schedule
    public let catchUp: CatchUp
    /// A run not finished this long after it was due raises an alert.
    public let deadline: Duration?
    public let after: After?
    public let work: Work
    /// What the job does once a run of it has ended (say, a list computed from what every
    /// batch tallied): called once per run, by whichever pod recorded its end, with the
    /// run's final record. An error is retried with backoff a few times, then alerted. A hook
    /// that works failed items after all moves them to done with `JobRuns.recover`, in the
    /// same script as its own record of them.
    public let onFinished: (@Sendable (JobRunProgress) async throws -> Void)?

    public init(
        name: String, schedule: Schedule, catchUp: CatchUp = .once, deadline: Duration? = nil, after: After? = nil,
        work: Work, onFinished: (@Sendable (JobRunProgress) async throws -> Void)? = nil
    ) {
        self.name = name
        self.schedule = schedule
        self.catchUp = catchUp
        self.deadline = deadline
        self.after = after
        self.work = work
        self.onFinished = onFinished
    }

    /// The consumer side of the jobs' fan-outs: one route per batch topic, handing each batch
    /// to the handler its job declared (a batch of a job no declaration names is dead-lettered).
    public static func batchRoutes(_ jobs: [ScheduledJob], runs: JobRuns) -> [TopicRoute] {
        var byTopic: [String: [(job: String, fanOut: FanOut)]] = [:]
        for job in jobs {
            if case .fanOut(let fanOut) = job.work { byTopic[fanOut.topic, default: []].append((job.name, fanOut)) }
        }
        return byTopic.keys.sorted().map { topic in
            let declared = byTopic[topic]!
            return TopicRoute(
                batchesOfTopic: topic, runs: runs, concurrency: declared.map(\.fanOut.concurrency).max() ?? 1,
                handlers: Dictionary(
                    declared.map { ($0.job, $0.fanOut.handler) }, uniquingKeysWith: { first, _ in first }))
        }
    }
}
