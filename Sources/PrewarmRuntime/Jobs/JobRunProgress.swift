import CoreMetrics
import Foundation
import Logging
import Postgres
import Redis
import Synchronization

/// One run of a job as recorded in Redis (`{prewarm:runs}:run:<job>:<period>:progress`): what
/// `prewarmctl status` and `GET /jobs/{job}/runs/{period}` show.
public struct JobRunProgress: Sendable, Codable, Equatable {
    public var job: String
    public var period: String
    /// Incremented by each forced re-run of the period; batches of an older attempt are not
    /// counted in this one's progress.
    public var attempt: Int
    /// Where it stands (`JobRunState`): partial and failed runs say so, with their counts.
    public var state: JobRunState
    public var owner: String?
    public var forced: Bool
    public var leased: Bool
    /// When the run was due: its scheduled fire, or the fire of the period a trigger named.
    public var dueAt: Date?
    public var startedAt: Date?
    public var deadlineAt: Date?
    public var fanOutFinishedAt: Date?
    /// When its work ended (its last batch recorded, or its body done).
    public var finishedAt: Date?
    /// When its finish step settled its outcome.
    public var settledAt: Date?
    /// From its start to its outcome settled (its finish step included), or to its work's end
    /// while the step runs: the one duration status, the runs route, logs and metrics show.
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

    public var isFinished: Bool { state.isFinished }

    /// Ended, and its finish step still to run: not reported yet, and the run has one (it
    /// was not skipped, nor failed by its winner's error, alerted then: its hook would see
    /// only part of it).
    public var owesFinishStep: Bool {
        isFinished && state != .skipped && (error ?? "").isEmpty && !finishReported
    }

    /// A record of a run with nothing done yet (for products and tests that build one).
    public init(job: String, period: String, attempt: Int, state: JobRunState) {
        // A known state: this cannot throw.
        try! self.init(
            fields: ["job": job, "period": period, "attempt": String(attempt), "state": state.rawValue], leased: false)
    }

    init(fields: [String: String], leased: Bool) throws {
        func int(_ name: String) -> Int? { fields[name].flatMap { Int($0) } }
        func date(_ name: String) -> Date? {
            int(name).map { Date(timeIntervalSince1970: Double($0) / 1000) }
        }
        job = fields["job"] ?? ""
        period = fields["period"] ?? ""
        attempt = int("attempt") ?? 0
        state = try JobRunState(recorded: fields["state"] ?? "")
        owner = fields["owner"]
        forced = fields["forced"] == "1"
        self.leased = leased
        dueAt = date("due_at")
        startedAt = date("started_at")
        deadlineAt = date("deadline_at")
        fanOutFinishedAt = date("fanout_finished_at")
        finishedAt = date("finished_at")
        settledAt = date("settled_at")
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
