import Foundation
import Logging
import Redis
import Synchronization

/// How job runs are leased and kept.
public struct JobRunSettings: Sendable {
    /// The winner's lease; a dead winner's run is taken over this long after its last renewal.
    public var lease: Duration
    /// How often each pod looks for runs to take over, catch up or alert on.
    public var checkEvery: Duration
    /// How long a run's records stay in Redis.
    public var retention: Duration

    public init(lease: Duration = .seconds(30), checkEvery: Duration = .seconds(10), retention: Duration = .days(7)) {
        self.lease = lease
        self.checkEvery = checkEvery
        self.retention = retention
    }
}

/// One run of a job as recorded in Redis (`prewarm:run:{job}:{period}:progress`): what
/// `prewarmctl status` and `GET /jobs/{job}/runs/{period}` show.
public struct JobRunProgress: Sendable, Codable, Equatable {
    public var job: String
    public var period: String
    /// Incremented by each forced re-run of the period; batches of an older attempt are not
    /// counted in this one's progress.
    public var attempt: Int
    /// running (fanning out, or working in place), fanned-out (waiting for its batches),
    /// succeeded, failed, or skipped (a missed period outside its catch-up window).
    public var state: String
    public var owner: String?
    public var forced: Bool
    public var leased: Bool
    /// When the run was due: its scheduled fire, or the fire of the period a trigger named.
    public var dueAt: Date?
    public var startedAt: Date?
    public var deadlineAt: Date?
    public var fanOutFinishedAt: Date?
    public var finishedAt: Date?
    public var durationSeconds: Double?
    public var batchesProduced: Int
    public var batchesExpected: Int?
    public var batchesTotal: Int?
    public var batchesDone: Int
    public var batchesFailed: Int
    public var itemsExpected: Int?
    public var itemsProduced: Int
    public var itemsDone: Int
    public var itemsFailed: Int
    public var takeovers: Int
    public var error: String?
    /// Where the fan-out stands: the last id produced.
    public var cursor: String
    /// Whether the run's finish step (its end reported, the job's finish hook run) is done.
    public var finishReported: Bool

    public var isFinished: Bool { ["succeeded", "failed", "skipped"].contains(state) }

    /// Ended, and its finish step still to run: not reported yet, and the run has one (it
    /// was not skipped, nor failed by its winner's error, alerted then: its hook would see
    /// only part of it).
    public var owesFinishStep: Bool {
        isFinished && state != "skipped" && (error ?? "").isEmpty && !finishReported
    }

    /// A record of a run with nothing done yet (for products and tests that build one).
    public init(job: String, period: String, attempt: Int, state: String) {
        self.init(fields: ["job": job, "period": period, "attempt": String(attempt), "state": state], leased: false)
    }

    init(fields: [String: String], leased: Bool) {
        func int(_ name: String) -> Int? { fields[name].flatMap { Int($0) } }
        func date(_ name: String) -> Date? {
            int(name).map { Date(timeIntervalSince1970: Double($0) / 1000) }
        }
        job = fields["job"] ?? ""
        period = fields["period"] ?? ""
        attempt = int("attempt") ?? 0
        state = fields["state"] ?? "unknown"
        owner = fields["owner"]
        forced = fields["forced"] == "1"
        self.leased = leased
        dueAt = date("due_at")
        startedAt = date("started_at")
        deadlineAt = date("deadline_at")
        fanOutFinishedAt = date("fanout_finished_at")
        finishedAt = date("finished_at")
        durationSeconds = int("duration_ms").map { Double($0) / 1000 }
        batchesProduced = int("batches_produced") ?? 0
        batchesExpected = int("batches_expected")
        batchesTotal = int("batches_total")
        batchesDone = int("batches_done") ?? 0
        batchesFailed = int("batches_failed") ?? 0
        itemsExpected = int("items_expected")
        itemsProduced = int("items_produced") ?? 0
        itemsDone = int("items_done") ?? 0
        itemsFailed = int("items_failed") ?? 0
        takeovers = int("takeovers") ?? 0
        error = fields["error"]
        cursor = fields["cursor"] ?? ""
        finishReported = fields["finish_reported"] == "1"
    }
}

/// The job-run records in Redis. A run of (job, period) is:
/// - `prewarm:run:{job}:{period}`: the lease of the pod working its fan-out (or its
///   in-place body), renewed while it works; when it dies the lease expires and another pod
///   takes the run over from the recorded progress;
/// - `…:progress`: a hash of where the run stands (see `JobRunProgress`);
/// - `…:batches:{attempt}`: the batch indices consumers have recorded, so a replayed batch
///   counts once;
/// - `…:done`: the success flag, set once every batch is recorded without failure;
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

    public init(redis: any RedisClient, settings: JobRunSettings, owner: String, logger: Logger, alerts: Alerts?) {
        self.redis = redis
        self.settings = settings
        self.owner = owner
        self.logger = logger
        self.alerts = alerts
    }

    public static func leaseKey(job: String, period: String) -> String { "prewarm:run:\(job):\(period)" }
    static func progressKey(job: String, period: String) -> String { leaseKey(job: job, period: period) + ":progress" }
    static func finishKey(job: String, period: String) -> String { leaseKey(job: job, period: period) + ":finish" }
    public static func doneKey(job: String, period: String) -> String { leaseKey(job: job, period: period) + ":done" }
    static func batchesKey(job: String, period: String, attempt: Int) -> String {
        leaseKey(job: job, period: period) + ":batches:\(attempt)"
    }

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
    /// ran; `skip` records the period as skipped instead of running it.
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
        let parts = (reply.array ?? []).map { $0.string ?? "" }
        guard parts.count == 2 else {
            throw RedisError(.protocolError, operation: "job-run claim", message: "unexpected reply \(reply)")
        }
        func lease(attempt: Int) -> JobRunLease {
            JobRunLease(
                runs: self, job: job, period: period, attempt: attempt,
                lease: RedisLease.adopt(
                    Self.leaseKey(job: job, period: period), token: token, ttl: settings.lease, on: redis, asked: asked)
            )
        }
        switch parts[0] {
        case "start":
            return .started(lease(attempt: Int(parts[1]) ?? 1))
        case "resume":
            guard let progress = try await progress(job: job, period: period) else {
                throw RedisError(.server, operation: "job-run claim", message: "progress of \(job) \(period) vanished")
            }
            return .resumed(lease(attempt: progress.attempt), progress, previousOwner: parts[1])
        case "held": return .held(state: parts[1])
        case "exists": return .exists(state: parts[1])
        default: return .skipped
        }
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
        return JobRunProgress(fields: fields, leased: replies[1] == .integer(1))
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
        case recorded(finished: String?)
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
        let parts = (reply.array ?? []).map { $0.string ?? "" }
        switch parts.first {
        case "recorded": return .recorded(finished: parts.count > 1 && !parts[1].isEmpty ? parts[1] : nil)
        case "duplicate": return .duplicate
        default: return .stale
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

    /// Registers what a job does once a run of it has ended (say, a list computed from
    /// what every batch tallied): called once per run, by whichever pod recorded its end, with
    /// the run's final record. An error is retried with backoff a few times, then alerted.
    public func onFinished(_ job: String, _ hook: @escaping @Sendable (JobRunProgress) async throws -> Void) {
        finishHooks.withLock { $0[job] = hook }
    }

    /// The lease on a run's finish step: short, renewed while the step runs, so that when
    /// its pod dies another can run the step soon after.
    static let finishLease = Duration.seconds(10)

    /// Runs the finish step of a finished run whose step never ended (the pod that recorded
    /// its last batch died before or during it), when a batch of the run comes again: the
    /// batch whose record ended the run was not committed, so it is delivered again. Waits
    /// out the lease of a pod that is running the step or died in it, then runs it, unless
    /// that pod ended it meanwhile.
    func finishIfPending(_ batch: JobBatch) async throws {
        let waitUntil = ContinuousClock.now + Self.finishLease * 2
        while true {
            guard let progress = try await progress(job: batch.job, period: batch.period),
                progress.attempt == batch.attempt, progress.owesFinishStep
            else { return }
            if try await finishStep(job: batch.job, period: batch.period, state: progress.state) { return }
            guard ContinuousClock.now < waitUntil else {
                logger.warning(
                    "a run's finish step is held by another pod; leaving it to that pod",
                    metadata: ["job": "\(batch.job)", "period": "\(batch.period)"])
                return
            }
            try await Task.sleep(for: .milliseconds(500))
        }
    }

    /// A run's finish step, by whoever recorded its end: under its lease, the job's hook, the
    /// log line and alerts, then `finish_reported` in the run's progress. False when another
    /// pod holds the lease. An error (Redis unreachable, the lease lost) is thrown: a
    /// consumer's batch is then tried again, and its replay runs the step
    /// (`finishIfPending`).
    @discardableResult
    func finishStep(job: String, period: String, state: String) async throws -> Bool {
        guard
            let lease = try await RedisLease.acquire(
                Self.finishKey(job: job, period: period), ttl: Self.finishLease, on: redis, owner: owner)
        else { return false }
        try await lease.holding(logger: logger) {
            try await self.runFinishStep(job: job, period: period, state: state)
            _ = try await self.redis.send("HSET", Self.progressKey(job: job, period: period), "finish_reported", 1)
        }
        return true
    }

    /// The step itself (skipped if another pod ended it meanwhile): the hook, tried again
    /// with backoff a few times and then alerted; the log line; alerts if the run failed or
    /// ended past its deadline.
    private func runFinishStep(job: String, period: String, state: String) async throws {
        let progress = try? await progress(job: job, period: period)
        if progress?.finishReported == true { return }
        if let progress, let hook = finishHooks.withLock({ $0[job] }) {
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
        var metadata: Logger.Metadata = ["job": "\(job)", "period": "\(period)", "state": "\(state)"]
        if let progress {
            metadata["seconds"] = "\(progress.durationSeconds ?? 0)"
            metadata["items_done"] = "\(progress.itemsDone)"
            metadata["items_failed"] = "\(progress.itemsFailed)"
            metadata["batches_failed"] = "\(progress.batchesFailed)"
        }
        logger.notice("job run finished", metadata: metadata)
        if state == "failed", let progress, progress.batchesFailed > 0 {
            alerts?.raise(
                "job-failed",
                "job \(job) \(period) finished with \(progress.batchesFailed) failed batches "
                    + "(\(progress.itemsFailed) items failed)",
                details: ["job": job, "period": period])
        }
        if let progress, let deadline = progress.deadlineAt, let finished = progress.finishedAt, finished > deadline {
            alerts?.raise(
                "job-late",
                "job \(job) \(period) finished at \(finished.formatted(.iso8601)), past its deadline "
                    + "\(deadline.formatted(.iso8601))",
                details: ["job": job, "period": period])
        }
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

/// The winner's hold on a run: its lease, and the fenced writes of its progress.
public final class JobRunLease: Sendable {
    public let job: String
    public let period: String
    public let attempt: Int
    public let lease: RedisLease
    private let runs: JobRuns

    init(runs: JobRuns, job: String, period: String, attempt: Int, lease: RedisLease) {
        self.runs = runs
        self.job = job
        self.period = period
        self.attempt = attempt
        self.lease = lease
    }

    private var keys: [any RedisArgument] {
        [JobRuns.leaseKey(job: job, period: period), JobRuns.progressKey(job: job, period: period)]
    }

    /// Records progress fields while the lease is ours (and extends it); throws `LeaseLost`
    /// when it is not, so a winner that stalled past its lease stops producing.
    public func record(_ fields: [(String, any RedisArgument)]) async throws {
        try lease.ensureHeld()
        var arguments: [any RedisArgument] = [lease.token, runs.settings.lease.milliseconds]
        for (name, value) in fields {
            arguments.append(name)
            arguments.append(value)
        }
        guard try await runs.redis.run(JobRunScripts.record, keys: keys, arguments: arguments) == .integer(1) else {
            throw LeaseLost(key: lease.key, reason: "another pod took the run over")
        }
    }

    /// The fan-out produced every batch. Returns the run's final state if every batch was
    /// already recorded (or there were none).
    func finishFanOut(batches: Int, items: Int) async throws -> String? {
        let reply = try await runs.redis.run(
            JobRunScripts.finishFanOut,
            keys: keys + [JobRuns.doneKey(job: job, period: period), JobRuns.activeKey],
            arguments: [
                lease.token, JobRuns.nowMilliseconds, runs.settings.retention.milliseconds, batches, items,
                "\(job):\(period)",
            ])
        let parts = (reply.array ?? []).map { $0.string ?? "" }
        guard parts.first == "fanned-out" else {
            throw LeaseLost(key: lease.key, reason: "another pod took the run over")
        }
        return parts.count > 1 && !parts[1].isEmpty ? parts[1] : nil
    }

    /// Ends a run: `succeeded` (an in-place body finished) or `failed` with the error.
    func finish(state: String, error: String = "") async throws {
        _ = try await runs.redis.run(
            JobRunScripts.finish,
            keys: keys + [JobRuns.doneKey(job: job, period: period), JobRuns.activeKey],
            arguments: [
                lease.token, JobRuns.nowMilliseconds, runs.settings.retention.milliseconds, state,
                String(error.prefix(500)), "\(job):\(period)",
            ])
    }
}

extension Duration {
    public static func days(_ days: Int) -> Duration { .seconds(days * 86_400) }
}
