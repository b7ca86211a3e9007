import Foundation
import Logging
import ServiceLifecycle

/// One scheduled job: when it fires and the fan-out its winning pod runs (enumerate the
/// targets, produce batch messages). The fan-out must be idempotent: a forced re-run or a
/// replay produces the same batches again.
public struct ScheduledJob: Sendable {
    public let name: String
    public let schedule: Schedule
    public let fanOut: @Sendable (JobRun) async throws -> Void

    public init(name: String, schedule: Schedule, fanOut: @escaping @Sendable (JobRun) async throws -> Void) {
        self.name = name
        self.schedule = schedule
        self.fanOut = fanOut
    }
}

/// One run of a job.
public struct JobRun: Sendable, Equatable {
    public let job: String
    public let period: String
    /// True when an operator forced a run the flag had already recorded.
    public let forced: Bool
}

public enum JobRunOutcome: Sendable, Equatable {
    /// This pod won the flag and the fan-out finished.
    case ran(JobRun)
    /// Another pod (or an earlier run) holds the period's flag.
    case alreadyClaimed(job: String, period: String)
}

/// Fires jobs on their schedules. At fire time every pod of the fleet races for
/// `prewarm:run:{job}:{period}`; the one that wins runs the fan-out, and every pod then
/// works the batches through its consumer group. A manual trigger takes the same path.
public final class Scheduler: Service {
    public let jobs: [ScheduledJob]
    public let timeZone: TimeZone
    private let flags: RedisFlags
    private let owner: String
    private let logger: Logger

    public init(jobs: [ScheduledJob], timeZone: TimeZone, flags: RedisFlags, owner: String, logger: Logger) {
        self.jobs = jobs
        self.timeZone = timeZone
        self.flags = flags
        self.owner = owner
        self.logger = logger
    }

    public func run() async throws {
        await withDiscardingTaskGroup { group in
            for job in jobs {
                group.addTask { await self.fireForever(job) }
            }
        }
    }

    private func fireForever(_ job: ScheduledJob) async {
        // Ends on graceful shutdown: the sleep is cancelled and a fan-out in flight finishes.
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let fire = job.schedule.nextFire(after: Date(), in: timeZone)
            logger.debug("next run", metadata: ["job": "\(job.name)", "at": "\(fire)"])
            do {
                try await cancelWhenGracefulShutdown { try await Self.sleep(until: fire) }
            } catch {
                return
            }
            _ = try? await self.fire(job, at: fire)
        }
    }

    /// Sleeps in short steps so a wall-clock change (NTP, a VM resumed) is noticed.
    private static func sleep(until date: Date) async throws {
        while true {
            let remaining = date.timeIntervalSinceNow
            if remaining <= 0 { return }
            try await Task.sleep(for: .seconds(min(remaining, 30)))
        }
    }

    /// A scheduled fire: the period of `date`, raced for.
    func fire(_ job: ScheduledJob, at date: Date) async throws -> JobRunOutcome {
        try await run(job, period: job.schedule.period(of: date, in: timeZone), force: false)
    }

    /// Runs `job` now, for `period` (default: the current one). Without `force` it honours
    /// the job-run flag like a scheduled fire; with it, it runs even if the period ran.
    public func trigger(job name: String, period: String? = nil, force: Bool = false) async throws -> JobRunOutcome {
        guard let job = jobs.first(where: { $0.name == name }) else {
            throw InvalidMessage("no job named '\(name)'", errorClass: "UnknownJob")
        }
        return try await run(job, period: period ?? job.schedule.period(of: Date(), in: timeZone), force: force)
    }

    private func run(_ job: ScheduledJob, period: String, force: Bool) async throws -> JobRunOutcome {
        let claimed = try await flags.claimRun(job: job.name, period: period, owner: owner, ttl: job.schedule.period)
        guard claimed || force else {
            logger.info("job already claimed for this period", metadata: ["job": "\(job.name)", "period": "\(period)"])
            return .alreadyClaimed(job: job.name, period: period)
        }
        let run = JobRun(job: job.name, period: period, forced: !claimed)
        logger.info(
            "job fan-out starting", metadata: ["job": "\(job.name)", "period": "\(period)", "forced": "\(!claimed)"])
        do {
            try await job.fanOut(run)
        } catch {
            // The flag stays: a half-done fan-out is finished by a forced trigger, not by
            // every pod at once. Loud, because nothing else will retry it.
            logger.critical(
                "job fan-out failed; re-run it with a forced trigger",
                metadata: ["job": "\(job.name)", "period": "\(period)", "error": "\(error)"])
            throw error
        }
        logger.info("job fan-out finished", metadata: ["job": "\(job.name)", "period": "\(period)"])
        return .ran(run)
    }
}
