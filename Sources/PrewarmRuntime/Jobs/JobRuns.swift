import CoreMetrics
import Foundation
import Logging
import Postgres
import Redis
import Synchronization

/// The job-run records in Redis. A run of (job, period) is:
/// - `prewarm:run:{job}:{period}`: the lease of the pod working its fan-out (or its
///   in-place body), renewed while it works; when it dies the lease expires and another pod
///   takes the run over from the recorded progress;
/// - `…:progress`: a hash of where the run stands (see `JobRunProgress`);
/// - `…:batches:{attempt}`: the batch indices consumers have recorded, so a replayed batch
///   counts once;
/// - `…:batch:{attempt}:{index}`: the lease of the consumer working a batch now (a batch
///   delivered again meanwhile waits for it; a push claim names it);
/// - `…:starts:{attempt}`: per batch, the consumers that began it and never came back (their
///   pods died in it);
/// - `…:done`: the success flag, set once the run succeeded;
/// - `…:finish`: the lease of the pod running the run's finish step (renewed while it
///   runs); the step's end is the progress field `finish_reported`;
/// - `prewarm:runs`: every run of the retention window by start time, for status.
public final class JobRuns: Sendable {
    public static let indexKey = "prewarm:runs"
    /// Runs whose fan-out (or in-place body) is under way: what a pod looks at for runs to
    /// take over, whatever their period.
    public static let activeKey = "prewarm:runs:active"

    public let redis: any RedisClient
    public let settings: JobRunSettings
    public let owner: String
    let logger: Logger
    let alerts: Alerts?
    private let finishHooks = Mutex<[String: @Sendable (JobRunProgress) async throws -> Void]>([:])
    /// Where finish steps run when a scheduler is there (its run group): never inside a
    /// consumer's batch, whose partition would wait for a step that may retry for an hour.
    private let launcher = Mutex<(@Sendable (_ job: String, _ period: String) -> Void)?>(nil)
    private let metrics: JobRunMetrics

    public init(
        redis: any RedisClient, settings: JobRunSettings, owner: String, logger: Logger, alerts: Alerts?,
        metricsFactory: any MetricsFactory = NOOPMetricsHandler.instance
    ) {
        self.redis = redis
        self.settings = settings
        self.owner = owner
        self.logger = logger
        self.alerts = alerts
        self.metrics = JobRunMetrics(factory: metricsFactory)
    }

    public static func leaseKey(job: String, period: String) -> String { "prewarm:run:\(job):\(period)" }
    /// The run's record; products fence their writes with its `attempt` (`JobRuns.fence`).
    public static func progressKey(job: String, period: String) -> String {
        leaseKey(job: job, period: period) + ":progress"
    }
    static func finishKey(job: String, period: String) -> String { leaseKey(job: job, period: period) + ":finish" }
    public static func doneKey(job: String, period: String) -> String { leaseKey(job: job, period: period) + ":done" }
    static func batchesKey(job: String, period: String, attempt: Int) -> String {
        leaseKey(job: job, period: period) + ":batches:\(attempt)"
    }
    /// The lease of the consumer working batch `index` of `attempt`.
    public static func batchLeaseKey(job: String, period: String, attempt: Int, batch index: Int) -> String {
        leaseKey(job: job, period: period) + ":batch:\(attempt):\(index)"
    }
    static func startsKey(job: String, period: String, attempt: Int) -> String {
        leaseKey(job: job, period: period) + ":starts:\(attempt)"
    }

    /// A Lua function for a product's fenced writes: `fenced(progressKey, attempt)` is false
    /// when the run's record names another attempt (a forced re-run superseded this one), so
    /// an older attempt never writes after a newer one began; true without a record (a batch
    /// worked outside a run). The script then returns without writing, and its caller throws
    /// `StaleAttempt`.
    public static let fence = """
        local function fenced(progress, attempt)
          local current = redis.call('HGET', progress, 'attempt')
          return current == false or current == attempt
        end
        """

    public enum Claim: Sendable {
        /// This pod starts the run (a fresh period, or a forced re-run).
        case started(JobRunLease)
        /// This pod takes over a run whose winner stopped renewing; go on from its progress.
        case resumed(JobRunLease, JobRunProgress, previousOwner: String)
        /// Another pod holds the run now.
        case held(state: String)
        /// The period has run (or is waiting for its batches): nothing to do unless forced.
        case exists(state: String)
        /// Recorded as skipped (outside its catch-up window).
        case skipped
    }

    /// Races for the run of (job, period). `force` starts a new attempt even if the period
    /// ran or is running (the older attempt is fenced: its winner's next write and its
    /// batches' fenced writes are refused); `skip` records the period as skipped instead of
    /// running it.
    public func claim(
        job: String, period: String, due: Date, force: Bool, deadline: Date?, skip: Bool = false
    ) async throws -> Claim {
        let token = "\(owner):\(UUID().uuidString)"
        let asked = ContinuousClock.now
        let reply = try await redis.run(
            JobRunScripts.claim,
            keys: [
                Self.leaseKey(job: job, period: period), Self.progressKey(job: job, period: period),
                Self.doneKey(job: job, period: period), Self.indexKey, Self.activeKey,
            ],
            arguments: [
                token, settings.lease.milliseconds, Self.nowMilliseconds, force ? "1" : "0", owner,
                settings.retention.milliseconds, "\(job):\(period)",
                deadline.map { String(Int64($0.timeIntervalSince1970 * 1000)) } ?? "", job, period, skip ? "1" : "0",
                Int64(due.timeIntervalSince1970 * 1000),
            ])
        let (outcome, detail) = try Self.pair(reply, "job-run claim")
        func lease(attempt: Int) -> JobRunLease {
            JobRunLease(
                runs: self, job: job, period: period, attempt: attempt,
                lease: RedisLease.adopt(
                    Self.leaseKey(job: job, period: period), token: token, ttl: settings.lease, on: redis, asked: asked)
            )
        }
        switch outcome {
        case "start":
            guard let attempt = Int(detail) else { throw UnknownReply(what: "job-run claim attempt", reply: detail) }
            return .started(lease(attempt: attempt))
        case "resume":
            guard let progress = try await progress(job: job, period: period) else {
                throw RedisError(.server, operation: "job-run claim", message: "progress of \(job) \(period) vanished")
            }
            return .resumed(lease(attempt: progress.attempt), progress, previousOwner: detail)
        case "held": return .held(state: detail)
        case "exists": return .exists(state: detail)
        case "skipped": return .skipped
        default: throw UnknownReply(what: "job-run claim", reply: outcome)
        }
    }

    /// A script's `{word, detail}` reply.
    static func pair(_ reply: RedisReply, _ what: String) throws -> (String, String) {
        let parts = (reply.array ?? []).map { $0.string ?? "" }
        guard parts.count == 2 else { throw UnknownReply(what: what, reply: "\(reply)") }
        return (parts[0], parts[1])
    }

    /// The runs under way (job, period), of any job.
    public func active() async throws -> [(job: String, period: String)] {
        (try await redis.send("SMEMBERS", Self.activeKey).array ?? []).compactMap { member in
            guard let text = member.string, let split = text.lastIndex(of: ":") else { return nil }
            return (String(text[..<split]), String(text[text.index(after: split)...]))
        }
    }

    /// Forgets an active run whose record is gone (expired).
    func forgetActive(job: String, period: String) async throws {
        try await redis.send("SREM", Self.activeKey, "\(job):\(period)")
    }

    /// Where the run stands, or nil if the period never ran (or its record expired).
    public func progress(job: String, period: String) async throws -> JobRunProgress? {
        let replies = try await redis.pipeline([
            RedisCommand("HGETALL", Self.progressKey(job: job, period: period)),
            RedisCommand("EXISTS", Self.leaseKey(job: job, period: period)),
        ])
        let flat = replies[0].array ?? []
        guard !flat.isEmpty else { return nil }
        var fields: [String: String] = [:]
        for index in stride(from: 0, to: flat.count - 1, by: 2) {
            fields[flat[index].string ?? ""] = flat[index + 1].string ?? ""
        }
        return try JobRunProgress(fields: fields, leased: replies[1] == .integer(1))
    }

    /// Every run started since `since`, oldest first.
    public func recent(since: Date) async throws -> [JobRunProgress] {
        let members = try await redis.send(
            "ZRANGEBYSCORE", Self.indexKey, Int64(since.timeIntervalSince1970 * 1000), "+inf")
        var runs: [JobRunProgress] = []
        for member in members.array ?? [] {
            guard let text = member.string, let split = text.lastIndex(of: ":") else { continue }
            let job = String(text[..<split])
            let period = String(text[text.index(after: split)...])
            if let progress = try await progress(job: job, period: period) { runs.append(progress) }
        }
        return runs
    }

    public enum BatchRecord: Sendable, Equatable {
        /// Counted; `finished` is the run's final state if this batch was its last.
        case recorded(finished: JobRunState?)
        /// Already counted (a replay or redelivery).
        case duplicate
        /// A batch of an older attempt of the run (the run was forced again since).
        case stale
    }

    /// A consumer finished (or failed) a batch of the run.
    public func recordBatch(_ batch: JobBatch, itemsDone: Int, itemsFailed: Int, failed: Bool) async throws
        -> BatchRecord
    {
        let reply = try await redis.run(
            JobRunScripts.recordBatch,
            keys: [
                Self.progressKey(job: batch.job, period: batch.period),
                Self.batchesKey(job: batch.job, period: batch.period, attempt: batch.attempt),
                Self.doneKey(job: batch.job, period: batch.period),
            ],
            arguments: [
                batch.attempt, batch.batch, itemsDone, itemsFailed, failed ? "1" : "0", Self.nowMilliseconds,
                settings.retention.milliseconds,
            ])
        let (outcome, detail) = try Self.pair(reply, "job-run record-batch")
        switch outcome {
        case "recorded": return .recorded(finished: detail.isEmpty ? nil : try JobRunState(recorded: detail))
        case "duplicate": return .duplicate
        case "stale": return .stale
        default: throw UnknownReply(what: "job-run record-batch", reply: outcome)
        }
    }

    /// Whether a batch was already recorded for the run's current attempt (a replay can
    /// skip its work).
    public func isRecorded(_ batch: JobBatch) async throws -> Bool {
        let replies = try await redis.pipeline([
            RedisCommand("HGET", Self.progressKey(job: batch.job, period: batch.period), "attempt"),
            RedisCommand(
                "SISMEMBER", Self.batchesKey(job: batch.job, period: batch.period, attempt: batch.attempt), batch.batch),
        ])
        return replies[0].string == String(batch.attempt) && replies[1] == .integer(1)
    }

    // MARK: - A consumer's batch

    /// What a consumer may do with a batch it was handed.
    public enum BatchStart: Sendable {
        /// Work it, under this lease (held while it is worked and recorded).
        case work(RedisLease)
        /// No record of its run (expired, or a batch made outside a run): work it unfenced;
        /// its record is refused.
        case orphan
        /// Of an older attempt than the run's: a forced re-run fenced it; skip it.
        case stale(current: Int)
        /// Already recorded for its attempt: a replay.
        case recorded
        /// Begun this many times by consumers that never came back: set it aside.
        case crashed(starts: Int)
    }

    /// Before a consumer works a batch: see `BatchStart`. A batch another live consumer is
    /// working now (delivered twice around a rebalance) is waited for, never worked beside it.
    func beginBatch(_ batch: JobBatch) async throws -> BatchStart {
        let token = "\(owner):\(UUID().uuidString)"
        let key = Self.batchLeaseKey(job: batch.job, period: batch.period, attempt: batch.attempt, batch: batch.batch)
        var waited = false
        while true {
            let asked = ContinuousClock.now
            let reply = try await redis.run(
                JobRunScripts.beginBatch,
                keys: [
                    Self.progressKey(job: batch.job, period: batch.period), key,
                    Self.startsKey(job: batch.job, period: batch.period, attempt: batch.attempt),
                    Self.batchesKey(job: batch.job, period: batch.period, attempt: batch.attempt),
                ],
                arguments: [
                    batch.attempt, batch.batch, token, settings.lease.milliseconds, settings.maxBatchCrashes,
                    settings.retention.milliseconds,
                ])
            let (outcome, detail) = try Self.pair(reply, "job-run begin-batch")
            switch outcome {
            case "begin":
                return .work(RedisLease.adopt(key, token: token, ttl: settings.lease, on: redis, asked: asked))
            case "orphan": return .orphan
            case "stale": return .stale(current: Int(detail) ?? 0)
            case "recorded": return .recorded
            case "crashed": return .crashed(starts: Int(detail) ?? settings.maxBatchCrashes)
            case "busy":
                if !waited {
                    logger.notice(
                        "batch is being worked by another consumer; waiting for it",
                        metadata: ["job": "\(batch.job)", "period": "\(batch.period)", "batch": "\(batch.batch)"])
                    waited = true
                }
                try await Task.sleep(for: .milliseconds(250))
            default: throw UnknownReply(what: "job-run begin-batch", reply: outcome)
            }
        }
    }

    /// The consumer came back from a batch it began (whatever the outcome): it is no longer
    /// counted among the starts that never returned. Runs even when the caller is cancelled
    /// (a shutdown gives the batch back: that is no crash).
    func endBatch(_ batch: JobBatch) async {
        let key = Self.startsKey(job: batch.job, period: batch.period, attempt: batch.attempt)
        let redis = redis
        let logger = logger
        await Task {
            do {
                try await retrying(
                    "ending batch \(batch.key)",
                    policy: RetryPolicy(
                        backoff: Backoff(initial: .milliseconds(100), maximum: .seconds(2)), maxAttempts: 5),
                    logger: logger
                ) { _ = try await redis.run(JobRunScripts.endBatch, keys: [key], arguments: [batch.batch]) }
            } catch {
                logger.warning(
                    "a batch's end could not be recorded; it counts as a start that never returned",
                    metadata: ["batch": "\(batch.key)", "error": "\(error)"])
            }
        }.value
    }

    /// Of `batches`, those a consumer began before and never came back from (its pod died in
    /// them): suspects, to be worked alone.
    func crashedBefore(_ batches: [JobBatch]) async throws -> [Bool] {
        guard !batches.isEmpty else { return [] }
        let replies = try await redis.pipeline(
            batches.map {
                RedisCommand(
                    "HGET", Self.startsKey(job: $0.job, period: $0.period, attempt: $0.attempt), $0.batch)
            })
        return replies.map { ($0.string.flatMap { Int($0) } ?? 0) > 0 }
    }

    // MARK: - The run's end

    /// Registers what a job does once a run of it has ended (say, a list computed from
    /// what every batch tallied): called once per run, by whichever pod recorded its end, with
    /// the run's final record. An error is retried with backoff a few times, then alerted.
    /// A hook that works failed items after all moves them to done with `JobRuns.recover`, in
    /// the same script as its own record of them.
    public func onFinished(_ job: String, _ hook: @escaping @Sendable (JobRunProgress) async throws -> Void) {
        finishHooks.withLock { $0[job] = hook }
    }

    /// A Lua function for a finish hook's script: `recover(progressKey, count)` moves `count`
    /// of the run's failed items to done, in the same script as the hook's own record of them,
    /// so a crash leaves its items either still failed or recovered and counted. A run whose
    /// record is gone is left alone.
    public static let recover = """
        local function recover(progress, count)
          if count == 0 or redis.call('EXISTS', progress) == 0 then return end
          redis.call('HINCRBY', progress, 'items_failed', -count)
          redis.call('HINCRBY', progress, 'items_done', count)
        end
        """

    /// Where finish steps run from now on (the scheduler's run group).
    func launchFinishSteps(with launch: @escaping @Sendable (_ job: String, _ period: String) -> Void) {
        launcher.withLock { $0 = launch }
    }

    /// The lease on a run's finish step: short, renewed while the step runs, so that when
    /// its pod dies another can run the step soon after.
    static let finishLease = Duration.seconds(10)

    /// A consumer recorded a run's last batch, or found a recorded batch of a run whose step
    /// never ended (the pod that recorded the run's end died before or in its step, so that
    /// batch came again): the step is launched beside the consumers when a scheduler runs
    /// here, else run now.
    func finishRun(job: String, period: String) async throws {
        if let launch = launcher.withLock({ $0 }) {
            launch(job, period)
        } else {
            try await finishWhenFree(job: job, period: period)
        }
    }

    /// Runs the finish step of an ended run that owes it: waits out the lease of a pod that is
    /// running the step or died in it (two finish leases at most), then runs it, unless that
    /// pod ended it meanwhile. Returns whether the step ran here.
    @discardableResult
    func finishWhenFree(job: String, period: String) async throws -> Bool {
        let waitUntil = ContinuousClock.now + Self.finishLease * 2
        while true {
            guard let progress = try await progress(job: job, period: period), progress.owesFinishStep else {
                return false
            }
            if try await finishStep(job: job, period: period) { return true }
            guard ContinuousClock.now < waitUntil else {
                logger.warning(
                    "a run's finish step is held by another pod; leaving it to that pod",
                    metadata: ["job": "\(job)", "period": "\(period)"])
                return false
            }
            try await Task.sleep(for: .milliseconds(500))
        }
    }

    /// The batch was recorded before: if its run ended and still owes its finish step, run it.
    func finishIfPending(_ batch: JobBatch) async throws {
        guard let progress = try await progress(job: batch.job, period: batch.period),
            progress.attempt == batch.attempt, progress.owesFinishStep
        else { return }
        try await finishRun(job: batch.job, period: batch.period)
    }

    /// A run's finish step, by whoever recorded its end: under its lease, the job's hook, then
    /// the run's outcome settled from its counts (`partial` or `failed` with what failed;
    /// a hook that recovered items may make it `succeeded`), `finish_reported`, the log line,
    /// alerts and metrics. False when another pod holds the lease. An error (Redis
    /// unreachable, the lease lost) is thrown: the step is run again later (a replayed
    /// batch, or the periodic check).
    @discardableResult
    func finishStep(job: String, period: String) async throws -> Bool {
        guard
            let lease = try await RedisLease.acquire(
                Self.finishKey(job: job, period: period), ttl: Self.finishLease, on: redis, owner: owner)
        else { return false }
        try await lease.holding(logger: logger) {
            try await self.runFinishStep(job: job, period: period)
        }
        return true
    }

    /// The step itself (skipped if another pod ended it meanwhile): the hook, tried again
    /// with backoff a few times and then alerted; the outcome settled; the log line; alerts if
    /// the run ended partial, failed or past its deadline.
    private func runFinishStep(job: String, period: String) async throws {
        guard let progress = try await progress(job: job, period: period), progress.owesFinishStep else { return }
        if let hook = finishHooks.withLock({ $0[job] }) {
            do {
                try await retrying(
                    "finishing \(job) \(period)",
                    policy: RetryPolicy(
                        backoff: Backoff(initial: .milliseconds(200), maximum: .seconds(5)), maxAttempts: 6),
                    logger: logger
                ) { try await hook(progress) }
            } catch let error where error is CancellationError || Task.isCancelled {
                throw error  // a pod shutting down: the step is not reported, another runs it
            } catch {
                alerts?.raise(
                    "job-finish-failed", "job \(job) \(period) ended but its last step failed: \(error)",
                    details: ["job": job, "period": period])
            }
        }
        let settled = try await redis.run(
            JobRunScripts.settle,
            keys: [Self.progressKey(job: job, period: period), Self.doneKey(job: job, period: period)],
            arguments: [progress.attempt, Self.nowMilliseconds, settings.retention.milliseconds])
        guard let text = settled.string, !text.isEmpty, let ended = try await self.progress(job: job, period: period)
        else { return }  // a newer attempt began meanwhile: its own step reports it
        _ = try JobRunState(recorded: text)
        report(ended)
    }

    /// The log line, alerts and metrics of a run whose outcome is settled.
    func report(_ run: JobRunProgress) {
        let job = run.job
        let period = run.period
        logger.notice(
            "job run finished",
            metadata: [
                "job": "\(job)", "period": "\(period)", "state": "\(run.state.rawValue)",
                "seconds": "\(run.durationSeconds ?? 0)", "items_done": "\(run.itemsDone)",
                "items_failed": "\(run.itemsFailed)", "batches_failed": "\(run.batchesFailed)",
            ])
        metrics.ended(job, run.state, seconds: run.durationSeconds)
        let failures =
            "\(run.itemsFailed) of \(run.itemsDone + run.itemsFailed) items failed"
            + (run.batchesFailed > 0 ? ", \(run.batchesFailed) batches set aside" : "")
        switch run.state {
        case .partial:
            alerts?.raise(
                "job-partial", "job \(job) \(period) ended partial: \(failures)",
                details: ["job": job, "period": period, "items_failed": String(run.itemsFailed)])
        case .failed where (run.error ?? "").isEmpty:
            alerts?.raise(
                "job-failed", "job \(job) \(period) failed: \(failures)",
                details: ["job": job, "period": period, "items_failed": String(run.itemsFailed)])
        default: break
        }
        if let deadline = run.deadlineAt, let finished = run.finishedAt, finished > deadline {
            alerts?.raise(
                "job-late",
                "job \(job) \(period) finished at \(RFC3339.display(finished)), past its deadline "
                    + "\(RFC3339.display(deadline))",
                details: ["job": job, "period": period])
        }
    }

    /// A run its winner failed (its body or fan-out threw): counted with the runs' outcomes.
    func countFailedByWinner(_ job: String) {
        metrics.ended(job, .failed, seconds: nil)
    }

    /// Marks that the run's deadline alert was raised; true for the one caller that did.
    func claimLateAlert(job: String, period: String) async throws -> Bool {
        try await claimAlert("late_alerted", job: job, period: period)
    }

    /// Marks that the run's alert `field` was raised; true for the one caller that did.
    func claimAlert(_ field: String, job: String, period: String) async throws -> Bool {
        try await redis.send("HSETNX", Self.progressKey(job: job, period: period), field, 1) == .integer(1)
    }

    static var nowMilliseconds: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
}
