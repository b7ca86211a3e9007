import CoreMetrics
import Foundation
import Kafka
import Logging
import NIOPosix
import Postgres
import PrewarmConfiguration
import PrewarmRuntime
import Redis
import Synchronization

/// `book-rec-push`: an hour's rows claimed, pushed and marked sent; the hour's finish step retries the failed within its send window.
extension BookRecJobs {

    /// How the record of pushes already produced is retried through a Redis outage: long
    /// enough for a failover (a node time-out and a promotion), then the batch fails.
    static let afterSending = RetryPolicy(
        backoff: Backoff(initial: .milliseconds(200), maximum: .seconds(2)), maxAttempts: 60)

    /// The push's id: the same user, slot and task always make the same id.
    public static func pushID(user: Int64, slot: String, task: String) -> String { "\(slot)-\(user)-\(task)" }

    /// What pushing some task_data rows did: its counts, the pushes delivered (to mark sent)
    /// and the rows that failed (a downstream or the broker refused them) with the error.
    struct PushOutcome {
        var counts: [String: Int]
        var sent: [(user: Int64, pushID: String)]
        var failed: [(row: Int64, user: Int64, error: any Error)]
    }

    func push(_ batch: JobBatch) async throws -> BatchResult {
        let outcome = try await push(rows: batch.ids, slot: batch.period, by: .batch(batch), batch: "\(batch.batch)")
        // Counted before the users are marked sent: a pod that dies between the two leaves
        // them claimed, and the batch's replay sends them again (same ids) without counting.
        // The failed rows join the hour's failed set with the counts, retried at its end.
        // The pushes are out: their record rides out a Redis outage here (a failover, a
        // restart) rather than failing the batch, whose replay would send them again.
        try await retrying("recording a batch's pushes", policy: Self.afterSending, logger: logger) {
            try await count(outcome.counts, failed: outcome.failed.map(\.row), batch)
            try await cache.markSent(outcome.sent, slot: batch.period)
        }
        warn(
            "pushes not sent; tried again until the hour's send window ends",
            outcome.failed.map { ($0.user, $0.error) }, ["slot": "\(batch.period)", "batch": "\(batch.batch)"])
        return BatchResult(itemsDone: batch.ids.count - outcome.failed.count, itemsFailed: outcome.failed.count)
    }

    /// Pushes the rows of an hour: the cached recommendation, the material service, one
    /// message each, claimed first (a push another live worker claimed is waited for) and
    /// produced in one send whose messages succeed or fail each on their own.
    func push(rows ids: [Int64], slot: String, by claimer: BookRecCache.Claimer, batch: String) async throws
        -> PushOutcome
    {
        let (rows, malformed) = try await data.rows(ids)
        for problem in malformed {
            logger.warning("task_data row skipped", metadata: ["row": "\(problem.id)", "reason": "\(problem.reason)"])
        }
        let cached = try await cache.read(rows.map(\.user))
        var hits: [(row: TaskDataRow, rec: CachedRecommendation)] = []
        var absent: [Int64] = []
        for (row, value) in zip(rows, cached) {
            if let value { hits.append((row, value)) } else { absent.append(row.user) }
        }
        // Users the pre-warm found outside the experiment get no push and are no miss.
        let out = try await cache.areOut(absent, day: String(slot.prefix(8)))
        let misses = zip(absent, out).filter { !$0.1 }.map(\.0)
        let notInExperiment = absent.count - misses.count
        // Every missed user is named (a hundred to a line): the seed's keyword alert reads them.
        for start in stride(from: 0, to: misses.count, by: 100) {
            logger.warning(
                "cache miss: no pre-warmed recommendation, push skipped",
                metadata: [
                    "slot": "\(slot)", "batch": "\(batch)",
                    "users": "\(misses[start..<min(start + 100, misses.count)])",
                ])
        }
        let pushes = hits.map {
            (user: $0.row.user, pushID: Self.pushID(user: $0.row.user, slot: slot, task: $0.row.task))
        }
        let claims = try await claim(pushes, slot: slot, by: claimer)
        var toSend: [(row: TaskDataRow, rec: CachedRecommendation, pushID: String)] = []
        var alreadySent = 0
        var otherPush = 0
        for (index, claim) in claims.enumerated() {
            switch claim {
            case .claimed, .unsent: toSend.append((hits[index].row, hits[index].rec, pushes[index].pushID))
            case .sent: alreadySent += 1
            case .other, .busy: otherPush += 1
            }
        }
        let producedAt = Date().formatted(.iso8601)
        let outcomes = try Self.unlessCancelled(
            await concurrentResults(toSend, limit: max(toSend.count, 1)) { item in
                let material = try await self.services.material(user: item.row.user, of: item.rec.recommendation)
                return try self.message(item.row, item.rec, material, pushID: item.pushID, slot: slot, at: producedAt)
            })
        var messages: [KafkaProducerMessage] = []
        var ready: [(row: TaskDataRow, pushID: String)] = []
        var failed: [(row: Int64, user: Int64, error: any Error)] = []
        for (item, outcome) in zip(toSend, outcomes) {
            switch outcome {
            case .success(let message):
                messages.append(message)
                ready.append((item.row, item.pushID))
            case .failure(let error): failed.append((item.row.id, item.row.user, error))
            }
        }
        // One send for the pushes; each is delivered or fails on its own (a failed one is
        // left claimed and retried, with the same id).
        var sent: [(user: Int64, pushID: String)] = []
        for (item, report) in zip(ready, try await producer.sendEach(messages)) {
            switch report {
            case .success: sent.append((item.row.user, item.pushID))
            case .failure(let error): failed.append((item.row.id, item.row.user, error))
            }
        }
        failpoint(produced: sent.count)
        return PushOutcome(
            counts: [
                "rows": ids.count, "malformed": malformed.count, "hits": hits.count, "misses": misses.count,
                "not_in_experiment": notInExperiment, "sent": sent.count, "already_sent": alreadySent,
                "other_push": otherPush, "failed": failed.count,
            ],
            sent: sent, failed: failed)
    }

    /// Claims the pushes; those another live worker holds (a consumer of the same batch
    /// around a rebalance, an older attempt's batch still at work after a forced re-run) are
    /// claimed again until that worker marked them or its lease lapsed: never sent beside it.
    func claim(_ pushes: [(user: Int64, pushID: String)], slot: String, by claimer: BookRecCache.Claimer)
        async throws -> [BookRecCache.Claim]
    {
        var claims = try await cache.claim(pushes, slot: slot, by: claimer, ttl: .seconds(2 * 86_400))
        var busy = claims.indices.filter { claims[$0] == .busy }
        if !busy.isEmpty {
            logger.notice(
                "pushes claimed by a worker still at work; waiting for it",
                metadata: ["slot": "\(slot)", "users": "\(busy.count)"])
        }
        while !busy.isEmpty {
            try await Task.sleep(for: .milliseconds(250))
            let again = try await cache.claim(
                busy.map { pushes[$0] }, slot: slot, by: claimer, ttl: .seconds(2 * 86_400))
            for (index, claim) in zip(busy, again) { claims[index] = claim }
            busy = busy.filter { claims[$0] == .busy }
        }
        return claims
    }

    /// The push (topics.md): key = the user id; the row's payload passed on as `data`. Written
    /// by hand, keys in the documented order (a generic encoder cost a tenth of the CPU).
    func message(
        _ row: TaskDataRow, _ rec: CachedRecommendation, _ material: Material, pushID: String, slot: String,
        at producedAt: String
    ) throws -> KafkaProducerMessage {
        var json = FlatJSON.Writer(capacity: 384 + row.payload.utf8.count + material.body.utf8.count)
        for (key, value) in [
            (#"{"material":{"body":"#, material.body), (#","image_url":"#, material.imageURL),
            (#","title":"#, material.title), (#"},"material_id":"#, rec.materialID),
            (#","produced_at":"#, producedAt), (#","project":"#, row.project), (#","push_id":"#, pushID),
            (#","rec_id":"#, rec.recID), (#","rec_type":"#, rec.recType), (#","slot":"#, slot),
            (#","task_id":"#, row.task), (#","trace_id":"#, rec.traceID),
        ] {
            json.raw(key)
            json.string(value)
        }
        json.raw(#","user_id":"#)
        json.raw(String(row.user))
        json.raw(#","data":"#)
        json.raw(row.payload)
        json.raw("}")
        return KafkaProducerMessage(
            topic: pushTopic, key: Array(String(row.user).utf8), value: json.bytes,
            headers: [KafkaHeader("push-id", Array(pushID.utf8))])
    }

    /// `PREWARM_PUSH_FAILPOINT_AFTER_PUSHES`: dies like a killed pod between produce and mark.
    func failpoint(produced count: Int) {
        let limit = options.failpointAfterPushes
        guard limit > 0, count > 0 else { return }
        let total = produced.add(count, ordering: .relaxed).newValue
        guard total >= limit, total - count < limit else { return }
        logger.critical("failpoint: killing this process after \(limit) pushes produced, before marking them sent")
        kill(getpid(), SIGKILL)
    }

    /// At an hour's end: its failed rows pushed again, with backoff, until none is left or
    /// its send window ends (a push after that is no use to anyone); those still unsent are
    /// named and alerted with their count (the run ends partial). Then its counts, and an
    /// alert when its misses pass the threshold.
    public func finishPush(_ run: JobRunProgress) async throws {
        // From the hour's :00, or from the run's start for an hour triggered ahead of time.
        let windowEnd =
            [run.dueAt, run.startedAt].compactMap { $0 }.min().map {
                $0.addingTimeInterval(options.sendWindow.seconds)
            } ?? Date().addingTimeInterval(options.sendWindow.seconds)
        let claimer = BookRecCache.Claimer.finishStep(run)
        let backoff = Backoff(initial: .seconds(1), maximum: .seconds(30))
        var round = 0
        var retried = 0
        var still: [Int64] = []
        while true {
            still = try await cache.failed(period: run.period, attempt: run.attempt)
            let left = windowEnd.timeIntervalSinceNow
            if still.isEmpty || left <= 0 { break }
            try await Task.sleep(for: min(backoff.delay(attempt: round), .seconds(left)))
            round += 1
            guard windowEnd.timeIntervalSinceNow > 0 else { continue }
            retried += still.count
            let outcome = try await push(rows: still, slot: run.period, by: claimer, batch: "retry \(round)")
            // Marked sent before the rows leave the failed set: a crash between leaves them
            // failed, and the next round finds them sent.
            try await retrying("marking retried pushes sent", policy: Self.afterSending, logger: logger) {
                try await cache.markSent(outcome.sent, slot: run.period)
            }
            let failedAgain = Set(outcome.failed.map(\.row))
            let recovered = still.filter { !failedAgain.contains($0) }
            let moved = [
                "sent": outcome.counts["sent"] ?? 0, "already_sent": outcome.counts["already_sent"] ?? 0,
                "other_push": outcome.counts["other_push"] ?? 0, "failed": -recovered.count,
            ]
            try await cache.settle(recovered, counts: moved, job: run.job, period: run.period, attempt: run.attempt)
            increment(moved, run.job)
        }
        let counts = try await cache.counts(job: run.job, period: run.period, attempt: run.attempt)
        let hits = counts["hits"] ?? 0
        let misses = counts["misses"] ?? 0
        let ratio = hits + misses == 0 ? 0 : Double(misses) / Double(hits + misses)
        logger.notice(
            "book-rec push hour finished",
            metadata: [
                "slot": "\(run.period)", "rows": "\(counts["rows"] ?? 0)", "sent": "\(counts["sent"] ?? 0)",
                "already_sent": "\(counts["already_sent"] ?? 0)", "misses": "\(misses)",
                "not_in_experiment": "\(counts["not_in_experiment"] ?? 0)",
                "miss_rate": "\(String(format: "%.3f", ratio))", "retried_at_end": "\(retried)",
                "unsent": "\(still.count)", "malformed": "\(counts["malformed"] ?? 0)",
            ])
        if !still.isEmpty {
            for chunk in stride(from: 0, to: min(still.count, 1000), by: 100) {
                logger.error(
                    "task_data rows left unpushed at the end of their hour's send window",
                    metadata: ["slot": "\(run.period)", "rows": "\(still[chunk..<min(chunk + 100, still.count)])"])
            }
            alerts?.raise(
                "book-rec-push-unsent",
                "book-rec push \(run.period): \(still.count) rows not pushed by the end of the send window "
                    + "(\(RFC3339.display(windowEnd))); they were retried \(round) times",
                details: ["slot": run.period, "unsent": String(still.count)])
        }
        if ratio > options.missAlertRatio {
            alerts?.raise(
                "book-rec-push-misses",
                "book-rec push \(run.period): \(misses) of \(hits + misses) users had no pre-warmed recommendation "
                    + "(\(String(format: "%.1f", ratio * 100)) %, above \(String(format: "%.1f", options.missAlertRatio * 100)) %)",
                details: ["slot": run.period, "misses": String(misses), "users": String(hits + misses)])
        }
    }
}
