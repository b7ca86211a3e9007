import BlockingIO
import BookRecPush
import DevBroker
import EntryIngest
import Foundation
import KAPrewarm
import Kafka
import Logging
import Postgres
import PrewarmConfiguration
import PrewarmFixtures
import PrewarmRuntime
import Redis

/// A run's work: ingest, scoring, the book pre-warm and push, KA pre-warms, then settling, a replay, bad input.
extension Chaos {
    func work() async throws {
        if case .badInput = scenario.fault { try await produceBadInputEverywhere() }
        try await ingest()
        try await score()
        try await prewarmKA()
        try await prewarmBooks()
        try await push()
        try await settle()
        if case .replay = scenario.fault { try await replay() }
    }

    func ingest() async throws {
        var generator = StoreEntryGenerator(seed: seed, timeZone: timeZone)
        let events = generator.events(count: 20_000, now: Date(), users: 1500, stores: 100)
        ledger.goodEvents = Set(events.map { $0.eventID.uuidString.lowercased() })
        let bad = StoreEntryGenerator.badMessages(now: Date()).map {
            ExtremeInputs.Input("bad \($0.errorClass)", key: $0.key, json: $0.json)
        }
        let topic = TopicCatalog.storeEntry.name
        let good = events.map { ExtremeInputs.Input("event", key: $0.message.key, json: $0.message.json) }
        var inputs = good
        for (index, input) in bad.enumerated() { inputs.insert(input, at: (index + 1) * 3000) }
        let reports = try await ExtremeInputs.produce(inputs, to: topic, bootstrap: bootstrap)
        ledger.bad[topic, default: []] += zip(inputs, reports).filter { $0.0.name.hasPrefix("bad") }.map(\.1)
        let total = Double(events.count)
        try await phase(.ingest) {
            Double(try await self.storedEvents()) / total
        } done: {
            try await self.storedEvents() >= events.count
        }
    }

    func storedEvents() async throws -> Int {
        try await db.query("SELECT count(*) FROM (\(EntryIngestSchema.allShards("event_id"))) s").first?[0].int ?? 0
    }

    func score() async throws {
        ledger.scoringAttempt = try await runJob("store-score", period: String(ledger.day.prefix(8)), phase: .scoring)
    }

    func prewarmBooks() async throws {
        ledger.prewarmAttempt = try await runJob(BookRecJobs.prewarmJob, period: ledger.day, phase: .prewarm)
    }

    func push() async throws {
        ledger.pushAttempt = try await runJob(BookRecJobs.pushJob, period: ledger.slot, phase: .push)
    }

    /// A forced run of the job (after any run of the period the pods started by themselves),
    /// watched until its outcome is settled; returns the attempt.
    func runJob(_ job: String, period: String, phase: ChaosPhase) async throws -> Int {
        let runs = JobRuns(
            redis: try cache, settings: JobRunSettings(), owner: "chaos", logger: logger, alerts: nil)
        try await waitUntil("a run of \(job) \(period) the pods started by themselves", timeout: .seconds(120)) {
            guard let run = try await runs.progress(job: job, period: period) else { return true }
            return run.isFinished && !run.owesFinishStep
        }
        let worker: ChaosWorker = job == "store-score" ? .storeScorer : .pushProducer
        let pod = try pod(of: worker)
        // A 503 (Redis too slow to answer on a loaded machine) started nothing: asked again,
        // as an operator's script would, for up to half a minute.
        var (status, body) = try await adminPost(pod, "/jobs/\(job)/trigger?period=\(period)&force=true")
        for _ in 0..<30 where status == 503 {
            try await Task.sleep(for: .seconds(1))
            (status, body) = try await adminPost(pod, "/jobs/\(job)/trigger?period=\(period)&force=true")
        }
        guard status == 202, let attempt = Self.attempt(in: body) else {
            throw ChaosFailure("trigger of \(job) \(period) answered \(status): \(body)")
        }
        try await self.phase(phase) {
            guard let run = try await runs.progress(job: job, period: period), run.attempt == attempt else { return 0 }
            let total = Double(run.itemsExpected ?? run.itemsProduced)
            return total > 0 ? Double(run.itemsDone + run.itemsFailed) / total : 0
        } done: {
            guard let run = try await runs.progress(job: job, period: period) else { return false }
            return run.attempt > attempt || (run.attempt == attempt && run.isFinished && !run.owesFinishStep)
        }
        return attempt
    }

    static func attempt(in body: String) -> Int? {
        guard let range = body.range(of: #""attempt":"#) else { return nil }
        return Int(body[range.upperBound...].prefix { $0.isNumber })
    }

    func prewarmKA() async throws {
        let starts = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 + 3600).rounded())
        ledger.reservations = Self.shops.enumerated().map { index, shop in
            Reservation(
                reservationID: "chaos-\(seed)-\(index)", liveID: Int64(seed % 1_000_000) * 10 + Int64(index),
                shopID: shop.id, startsAt: starts, endsAt: starts.addingTimeInterval(3600), force: false)
        }
        let topic = TopicCatalog.liveReservation.name
        var inputs = try ledger.reservations.map { reservation in
            let message = try reservation.message(topic: topic)
            return ExtremeInputs.Input("reservation", key: message.key, value: message.value)
        }
        inputs.insert(
            ExtremeInputs.Input(
                "bad unknown shop", key: "77",
                json: #"{"reservation_id": "x", "live_id": 1, "shop_id": 77, "#
                    + #""starts_at": "2030-01-01T00:00:00Z", "ends_at": "2030-01-01T01:00:00Z"}"#), at: 1)
        let reports = try await ExtremeInputs.produce(inputs, to: topic, bootstrap: bootstrap)
        ledger.bad[topic, default: []] += zip(inputs, reports).filter { $0.0.name.hasPrefix("bad") }.map(\.1)
        let lives = ledger.reservations.map { String($0.liveID) }
        let total = Double(Self.shops.map(\.users).reduce(0, +))
        try await phase(.ka) {
            Double(try await self.kaDone(lives).done) / total
        } done: {
            try await self.kaDone(lives).succeeded == lives.count
        }
    }

    func kaDone(_ lives: [String]) async throws -> (done: Int, succeeded: Int) {
        let row = try await db.query(
            """
            SELECT coalesce(sum(done), 0), count(*) FILTER (WHERE state = 'succeeded')
            FROM prewarm_tasks WHERE kind = 'ka-prewarm' AND key = ANY($1::text[])
            """, [lives.postgresArray]
        ).first
        return (row?[0].int ?? 0, row?[1].int ?? 0)
    }

    /// Every consumer group caught up (committed to the end of its topic), the activity's
    /// marker there (a rebuild after a Redis loss is over), every KA task succeeded (one
    /// queued again after a loss included), and every run of the day settled (one the pods
    /// caught up again after a loss included).
    func settle() async throws {
        let operations = GroupOperations(bootstrapServers: bootstrap, properties: KafkaProperties(), logger: logger)
        try await waitUntil("every consumer group committed to its end", timeout: .seconds(120)) {
            let lag = try await operations.catalogLag()
            return lag.values.allSatisfy { $0.values.allSatisfy { $0 == 0 } }
        }
        try await waitUntil("the activity's marker", timeout: .seconds(120)) {
            try await self.cache.send("EXISTS", ActivityGuard.epochKey) == .integer(1)
        }
        let lives = ledger.reservations.map { String($0.liveID) }
        try await waitUntil("every KA task succeeded", timeout: .seconds(180)) {
            try await self.kaDone(lives).succeeded == lives.count
        }
        let runs = JobRuns(redis: try cache, settings: JobRunSettings(), owner: "chaos", logger: logger, alerts: nil)
        for (job, period) in [
            ("store-score", String(ledger.day.prefix(8))), (BookRecJobs.prewarmJob, ledger.day),
            (BookRecJobs.pushJob, ledger.slot),
        ] {
            try await waitUntil("the run \(job) \(period) settled", timeout: .seconds(180)) {
                guard let run = try await runs.progress(job: job, period: period) else { return true }
                return run.isFinished && !run.owesFinishStep
            }
        }
    }

    /// The replay: the fleet stopped, every group reset to earliest, the fleet started, caught up.
    func replay() async throws {
        let before = try await ChaosRecount(chaos: self).digest()

        await fleet.terminateAll()
        let operations = GroupOperations(bootstrapServers: bootstrap, properties: KafkaProperties(), logger: logger)
        for spec in TopicCatalog.sources {
            guard let group = spec.consumerGroup else { continue }
            _ = try await operations.resetOffsets(group: group, topic: spec.name, to: .earliest)
        }
        faults.append("every group reset to earliest, the fleet restarted")
        for pod in fleet.pods { try await fleet.restart(pod, waitForReady: false) }
        for pod in fleet.pods { try await fleet.waitReady(pod) }
        try await settle()
        let after = try await ChaosRecount(chaos: self).digest()
        let changed = Set(before.keys).union(after.keys).sorted().filter { before[$0] != after[$0] }
        guard changed.isEmpty else {
            throw ChaosFailure(
                "the replay changed "
                    + changed.map { "\($0): \(before[$0] ?? "nothing") -> \(after[$0] ?? "nothing")" }
                    .joined(separator: "; "))
        }
    }

    func produceBadInputEverywhere() async throws {
        let topics: [(TopicSpec, String, String, [String])] = [
            (
                TopicCatalog.storeEntry,
                #"{"event_id": "3f6c2a9e-8d1b-4c57-9a0e-2b7f5d1c8e44", "user_id": 42, "store_id": 7, "entered_at": "2026-01-01T00:00:00Z"}"#,
                "42", ["user_id", "store_id"]
            ),
            (
                TopicCatalog.liveReservation,
                #"{"reservation_id": "r", "live_id": 5, "shop_id": 9101, "starts_at": "2030-01-01T00:00:00Z", "ends_at": "2030-01-01T01:00:00Z"}"#,
                "9101", ["live_id", "shop_id"]
            ),
            (
                TopicCatalog.storeRecommendationBatches,
                #"{"job": "store-score", "period": "20260101", "attempt": 1, "batch": 0, "ids": [42], "produced_at": "2026-01-01T00:00:00Z"}"#,
                "store-score:20260101:0", ["attempt"]
            ),
            (
                TopicCatalog.bookRecommendationBatches,
                #"{"job": "book-rec-push", "period": "2026010100", "attempt": 1, "batch": 0, "ids": [42], "produced_at": "2026-01-01T00:00:00Z"}"#,
                "book-rec-push:2026010100:0", ["attempt"]
            ),
        ]
        for (spec, template, key, ids) in topics {
            let inputs = ExtremeInputs.bad(template: template, key: key, ids: ids)
            ledger.bad[spec.name, default: []] += try await ExtremeInputs.produce(
                inputs, to: spec.name, bootstrap: bootstrap)
        }
        faults.append("\(ledger.bad.values.map(\.count).reduce(0, +)) bad inputs on the four consumed topics")
    }
}
