import CoreMetrics
import Foundation
import Logging
import Postgres
import Redis
import Synchronization

/// The job-run records in Redis. Every run-scoped key carries the hash tag `{prewarm:runs}`
/// (`slotTag`): on a Redis Cluster they share one slot, so each step of a run stays one
/// atomic script over its lease, record, batches and the index. They are a few keys a batch,
/// never read on a hot path. A run of (job, period) is (`<job>` and `<period>` placeholders):
/// - `{prewarm:runs}:run:<job>:<period>`: the lease of the pod working its fan-out (or its
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
/// - `{prewarm:runs}:index`: every run of the retention window by start time, for status;
/// - `{prewarm:runs}:active`: the runs under way.
public final class JobRuns: Sendable {
    /// The hash tag of run-scoped keys: products put their own (a run's counts, its failed
    /// items) under it too (`runScopedKey`), so a script may take them with the run's record.
    public static let slotTag = "{prewarm:runs}"
    public static let indexKey = slotTag + ":index"
    /// Runs whose fan-out (or in-place body) is under way: what a pod looks at for runs to
    /// take over, whatever their period.
    public static let activeKey = slotTag + ":active"

    public let redis: any RedisClient
    public let settings: JobRunSettings
    public let owner: String
    let logger: Logger
    let alerts: Alerts?
    let finishHooks = Mutex<[String: @Sendable (JobRunProgress) async throws -> Void]>([:])
    /// Where finish steps run when a scheduler is there (its run group): never inside a
    /// consumer's batch, whose partition would wait for a step that may retry for an hour.
    let launcher = Mutex<(@Sendable (_ job: String, _ period: String) -> Void)?>(nil)
    let metrics: JobRunMetrics

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

    public static func leaseKey(job: String, period: String) -> String { runScopedKey("run:\(job):\(period)") }
    /// `name` in the run-scoped slot: `{prewarm:runs}:name`.
    public static func runScopedKey(_ name: String) -> String { slotTag + ":" + name }
    /// The run's record; products fence their writes with its `attempt` (`AttemptFence`).
    public static func progressKey(job: String, period: String) -> String {
        leaseKey(job: job, period: period) + ":progress"
    }
    /// The lease of the pod running the run's finish step.
    public static func finishKey(job: String, period: String) -> String {
        leaseKey(job: job, period: period) + ":finish"
    }
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
            keys: RedisArguments([
                Self.leaseKey(job: job, period: period), Self.progressKey(job: job, period: period),
                Self.doneKey(job: job, period: period), Self.indexKey, Self.activeKey,
            ]),
            arguments: ClaimArguments(
                token: token, leaseMilliseconds: settings.lease.milliseconds, now: Self.nowMilliseconds, force: force,
                owner: owner, retentionMilliseconds: settings.retention.milliseconds, member: "\(job):\(period)",
                deadline: deadline.map { Int64($0.timeIntervalSince1970 * 1000) }, job: job, period: period, skip: skip,
                due: Int64(due.timeIntervalSince1970 * 1000)
            ).values)
        let answer = try JobRunReply<ClaimWord>(reply, of: JobRunScripts.claim)
        func lease(attempt: Int) -> JobRunLease {
            JobRunLease(
                runs: self, job: job, period: period, attempt: attempt,
                lease: RedisLease.adopt(
                    Self.leaseKey(job: job, period: period), token: token, ttl: settings.lease, on: redis, asked: asked)
            )
        }
        switch answer.word {
        case .start:
            return .started(lease(attempt: try answer.number(JobRunScripts.claim)))
        case .resume:
            guard let progress = try await progress(job: job, period: period) else {
                throw RedisError(.server, operation: "job-run claim", message: "progress of \(job) \(period) vanished")
            }
            return .resumed(lease(attempt: progress.attempt), progress, previousOwner: answer.detail)
        case .held: return .held(state: answer.detail)
        case .exists: return .exists(state: answer.detail)
        case .skipped: return .skipped
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
        let answer = try JobRunReply<RecordBatchWord>(reply, of: JobRunScripts.recordBatch)
        switch answer.word {
        case .recorded: return .recorded(finished: try answer.finalState)
        case .duplicate: return .duplicate
        case .stale: return .stale
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

    static var nowMilliseconds: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
}
