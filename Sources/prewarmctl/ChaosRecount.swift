import BookRecPush
import DownstreamSimulation
import EntryIngest
import Foundation
import KAPrewarm
import Kafka
import Postgres
import PrewarmConfiguration
import PrewarmRuntime
import Redis
import StoreRecommendation

/// The invariants of a chaos run, checked against a recount from PostgreSQL, Redis and the
/// topics (never against the workers' own counters):
/// - every good store entry stored once, and counted on its day (the day sets equal the log);
/// - every bad input in its DLQ with a class;
/// - every active user of the window scored, its list the formula's top stores;
/// - every KA user key present, expiring 30 to 40 minutes after its stream, the flag set;
/// - every user of the day pre-warmed (or recorded outside the experiment);
/// - every cached user of the hour pushed exactly once for the slot (a repeat of the same
///   push id only after a crash, counted), none lost, never two different pushes.
struct ChaosRecount {
    let chaos: Chaos
    var differences: [String] = []
    var items = 0
    var lost = 0
    var duplicated = 0

    init(chaos: Chaos) {
        self.chaos = chaos
    }

    private var db: PostgresConnection { get throws { try chaos.db } }
    private var cache: any RedisClient { get throws { try chaos.cache } }
    private var ledger: ChaosLedger { chaos.ledger }

    mutating func run() async throws -> ChaosRecount {
        try await entries()
        try await deadLetters()
        try await scoring()
        try await keyAccounts()
        try await prewarm()
        try await pushes()
        return self
    }

    private mutating func differ(_ text: String) { differences.append(text) }

    // MARK: - entry-ingest

    private mutating func entries() async throws {
        // The log is the shards and the archive (the nightly archive moves old rows there).
        let rows = try await db.query(
            """
            SELECT event_id::text, count(*) FROM (
                SELECT event_id FROM (\(EntryIngestSchema.allShards("event_id"))) s
                UNION ALL SELECT event_id FROM \(EntryIngestSchema.archiveTable)) e
            GROUP BY 1
            """)
        var stored: Set<String> = []
        for row in rows.rows {
            guard let id = row[0].string else { continue }
            stored.insert(id)
            if (row[1].int ?? 0) > 1 {
                duplicated += 1
                differ("event \(id) stored \(row[1].int ?? 0) times")
            }
        }
        items += ledger.goodEvents.count
        let missing = ledger.goodEvents.subtracting(stored)
        let extra = stored.subtracting(ledger.goodEvents)
        lost += missing.count
        if !missing.isEmpty { differ("\(missing.count) good events not stored, e.g. \(missing.sorted().prefix(3))") }
        if !extra.isEmpty { differ("\(extra.count) events stored that were not sent as good ones") }
        // Each day set of the last 30 days equals the log's users of that day.
        let days = try await db.query(
            """
            SELECT to_char(entered_at AT TIME ZONE $1, 'YYYYMMDD') AS day, array_agg(DISTINCT user_id)::text
            FROM (\(EntryIngestSchema.allShards("user_id, entered_at"))) s
            WHERE entered_at >= now() - interval '30 days' GROUP BY 1
            """, [chaos.timeZone.identifier])
        for row in days.rows {
            guard let day = row[0].string else { continue }
            let logged = Set(Self.integers(row[1].string ?? "{}"))
            let members = Set(
                (try await cache.send("SMEMBERS", ActivityWriter.dayKey(day, prefix: "")).array ?? []).compactMap {
                    $0.string.flatMap { Int64($0) }
                })
            if logged != members {
                differ(
                    "{act}:day:\(day) has \(members.count) users, the log \(logged.count) "
                        + "(missing \(logged.subtracting(members).count), extra \(members.subtracting(logged).count))")
            }
        }
    }

    /// The integers of a PostgreSQL array's text (`{1,2,3}`).
    static func integers(_ text: String) -> [Int64] {
        text.trimmingCharacters(in: CharacterSet(charactersIn: "{}")).split(separator: ",").compactMap { Int64($0) }
    }

    // MARK: - Dead letters

    private mutating func deadLetters() async throws {
        for (topic, placed) in ledger.bad {
            let letters = try await chaos.read(topic + ".dlq")
            var seen: [String: Int] = [:]
            for letter in letters where letter.header(DeadLetter.Header.originalTopic)?.stringValue == topic {
                guard letter.header(DeadLetter.Header.errorClass)?.stringValue?.isEmpty == false else {
                    differ("a dead letter of \(topic) without its class")
                    continue
                }
                let place =
                    "\(letter.header(DeadLetter.Header.originalPartition)?.stringValue ?? "")/"
                    + (letter.header(DeadLetter.Header.originalOffset)?.stringValue ?? "")
                seen[place, default: 0] += 1
            }
            items += placed.count
            for report in placed {
                let count = seen["\(report.partition)/\(report.offset)"] ?? 0
                if count == 0 {
                    lost += 1
                    differ("the bad input at \(topic)[\(report.partition)]@\(report.offset) is not in its DLQ")
                } else if count > 1 {
                    duplicated += count - 1
                    if !chaos.scenario.fault.mayLetterTwice {
                        differ(
                            "the bad input at \(topic)[\(report.partition)]@\(report.offset) dead-lettered \(count) times"
                        )
                    }
                }
            }
        }
    }

    // MARK: - store-scorer

    private mutating func scoring() async throws {
        let period = String(ledger.day.prefix(8))
        let runs = JobRuns(
            redis: try cache, settings: JobRunSettings(), owner: "chaos", logger: chaos.logger, alerts: nil)
        guard let run = try await runs.progress(job: "store-score", period: period) else {
            return differ("no store-score run of \(period)")
        }
        if run.state != .succeeded { differ("store-score \(period) ended \(run.state.rawValue)") }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = chaos.timeZone
        let day = calendar.date(
            from: DateComponents(
                year: Int(period.prefix(4)), month: Int(period.dropFirst(4).prefix(2)), day: Int(period.suffix(2)),
                hour: 12))!
        let since = calendar.startOfDay(for: calendar.date(byAdding: .day, value: -29, to: day)!)
        // Active: seven or more days with an entry among the 30 ending with the run's day.
        let active = try await db.query(
            """
            SELECT user_id FROM (\(EntryIngestSchema.allShards("user_id, entered_at"))) s
            WHERE entered_at >= $1 AND entered_at < $2
            GROUP BY user_id HAVING count(DISTINCT to_char(entered_at AT TIME ZONE $3, 'YYYYMMDD')) >= 7
            """,
            [
                since, calendar.date(byAdding: .day, value: 1, to: calendar.startOfDay(for: day))!,
                chaos.timeZone.identifier,
            ]
        ).rows.compactMap { $0[0].int64 }
        items += active.count
        if run.itemsDone + run.itemsFailed != active.count {
            differ("store-score \(period) worked \(run.itemsDone + run.itemsFailed) users; \(active.count) are active")
        }
        let data = StoreData(pool: PostgresPool(try await PostgresConnection.connect(try chaos.schemaConfiguration)))
        defer { Task { await data.pool.close() } }
        // Ties go to the more popular store by the tally the run read at its start: none for
        // the first run with the data, the table's for a run after another (a catch-up after
        // Redis lost the first's record). A list is right by either.
        let stores = try await data.stores()
        let catalogs = [
            StoreCatalog(open: stores.open, closed: stores.closed, popularity: [:]),
            StoreCatalog(open: stores.open, closed: stores.closed, popularity: try await data.popularity()),
        ]
        let visits = try await data.visits(of: active, since: since)
        let cacheOfLists = RecommendationCache(redis: try cache)
        // The latest run's lists (the pods catch a run up again when Redis lost its record).
        let stamp = StoreList.stamp(period: period, attempt: run.attempt)
        var wrong = 0
        var missing = 0
        for user in active {
            let expected = catalogs.map { catalog in
                catalog.top(
                    (visits[user] ?? []).map { catalog.visit(store: $0.store, count: $0.count) }, weights: .standard,
                    length: 4)
            }
            guard let list = try await cacheOfLists.list(of: user) else {
                if !expected[0].isEmpty { missing += 1 }
                continue
            }
            if list.run != stamp || !expected.contains(list.stores) { wrong += 1 }
        }
        lost += missing
        if missing > 0 { differ("\(missing) active users without a list") }
        if wrong > 0 { differ("\(wrong) lists differ from the formula's recount (or are of another run)") }
    }

    // MARK: - ka-prewarmer

    private mutating func keyAccounts() async throws {
        let kaCache = KACache(redis: try cache)
        for reservation in ledger.reservations {
            let users = Chaos.shops.first { $0.id == reservation.shopID }?.users ?? 0
            items += users
            let task = try await TaskQueue(pool: PostgresPool(db), settings: TaskSettings()).task(
                kind: KAPrewarmTask.kind, key: String(reservation.liveID))
            if task?.state != .succeeded {
                differ("KA task of live \(reservation.liveID): \(task?.state.rawValue ?? "none")")
            }
            if try await cache.send("EXISTS", kaCache.doneKey(live: reservation.liveID)) != .integer(1) {
                differ("the success flag of live \(reservation.liveID) is missing")
            }
            let end = Int64(reservation.endsAt.timeIntervalSince1970 * 1000)
            var absent = 0
            var outOfRange = 0
            for start in stride(from: 1, through: users, by: 1000) {
                let ids = (start...min(start + 999, users)).map { Int64($0) }
                let replies = try await cache.pipeline(
                    ids.map { RedisCommand("PEXPIRETIME", kaCache.userKey(shop: reservation.shopID, user: $0)) })
                for reply in replies {
                    guard let at = reply.integer, at > 0 else {
                        absent += 1
                        continue
                    }
                    if at < end + 30 * 60_000 || at > end + 40 * 60_000 + 2000 { outOfRange += 1 }
                }
            }
            lost += absent
            if absent > 0 { differ("shop \(reservation.shopID): \(absent) of \(users) user keys missing") }
            if outOfRange > 0 { differ("shop \(reservation.shopID): \(outOfRange) user keys expire out of range") }
        }
    }

    // MARK: - push-producer

    /// The day's targets: the users of its two tasks.
    private func targets() async throws -> [(row: Int64, user: Int64, task: String)] {
        try await db.query(
            "SELECT id, source_uid, task_id FROM task_data WHERE task_id = ANY($1::text[]) ORDER BY id",
            [BookRecOptions().tasks(day: ledger.day).postgresArray]
        ).rows.compactMap { row in
            guard let id = row[0].int64, let user = row[1].int64, let task = row[2].string else { return nil }
            return (id, user, task)
        }
    }

    private mutating func prewarm() async throws {
        let users = Set(try await targets().map(\.user))
        items += users.count
        let book = BookRecCache(redis: try cache)
        let cached = try await book.read(Array(users))
        var missing = 0
        for (user, value) in zip(Array(users), cached)
        where value == nil && DownstreamSimulator.isIn(user: user, share: chaos.simulator.behaviour.experimentShare) {
            missing += 1
        }
        lost += missing
        if missing > 0 { differ("\(missing) users of the experiment without a pre-warmed recommendation") }
    }

    private mutating func pushes() async throws {
        let rows = try await targets()
        let share = chaos.simulator.behaviour.experimentShare
        // A user in both tasks gets the push of the row claimed first: one push per user.
        let expected = Set(rows.map(\.user).filter { DownstreamSimulator.isIn(user: $0, share: share) })
        items += expected.count
        var pushIDs: [Int64: [String]] = [:]
        for message in try await chaos.read(TopicCatalog.bookRecommendationPush.name) {
            guard let id = message.header("push-id")?.stringValue, id.hasPrefix(ledger.slot + "-"),
                let user = message.keyString.flatMap({ Int64($0) })
            else { continue }
            pushIDs[user, default: []].append(id)
        }
        let unpushed = expected.subtracting(pushIDs.keys)
        lost += unpushed.count
        if !unpushed.isEmpty {
            differ("\(unpushed.count) users of the hour not pushed, e.g. \(unpushed.sorted().prefix(3))")
        }
        for (user, ids) in pushIDs {
            if Set(ids).count > 1 { differ("user \(user) got two different pushes for the slot: \(Set(ids))") }
            if ids.count > 1 {
                duplicated += ids.count - 1
                if !chaos.scenario.fault.crashes, !chaos.scenario.fault.losesRedisWrites {
                    differ("user \(user) pushed \(ids.count) times without a crash or a failover")
                }
            }
        }
    }

    // MARK: - The replay's digest

    /// What a replay must leave unchanged: the log, the activity, the lists, the KA keys, the
    /// tasks and the pushes.
    func digest() async throws -> [String: String] {
        var digest: [String: String] = [:]
        digest["events"] =
            try await db.query(
                "SELECT count(*) || ':' || md5(string_agg(event_id::text, ',' ORDER BY event_id)) FROM (\(EntryIngestSchema.allShards("event_id"))) s"
            ).first?[0].string ?? ""
        // Each activity key on its own, so that a difference names the day or month.
        for key in try await keys("{act}:day:*") + keys("{act}:month:*") {
            let type = try await cache.send("TYPE", key).string ?? ""
            let values =
                type == "set"
                ? (try await cache.send("SMEMBERS", key).array ?? []).compactMap(\.string).sorted()
                : Self.sortedPairs((try await cache.send("HGETALL", key).array ?? []).compactMap(\.string))
            digest[key] = "\(values.count) members, hash \(values.joined(separator: ",").hashValue)"
        }
        var lists: [String] = []
        for key in try await keys("STORE_RECOMMEND_ONE:*") {
            lists.append(key + "=" + (try await cache.send("GET", key).string ?? ""))
        }
        digest["lists"] = "\(lists.count):\(lists.sorted().joined().hashValue)"
        digest["ka keys"] = String(try await keys("ka:*").count)
        digest["tasks"] =
            try await db.query("SELECT count(*) || ':' || string_agg(state, ',' ORDER BY key) FROM prewarm_tasks")
            .first?[0].string ?? ""
        digest["pushes"] = String(try await chaos.read(TopicCatalog.bookRecommendationPush.name).count)
        return digest
    }

    private static func sortedPairs(_ flat: [String]) -> [String] {
        stride(from: 0, to: flat.count - 1, by: 2).map { flat[$0] + ":" + flat[$0 + 1] }.sorted()
    }

    private func keys(_ pattern: String) async throws -> [String] {
        try await cache.keys(matching: pattern)
    }
}

extension Chaos {
    /// Every message of `topic` from its start to its current end.
    func read(_ topic: String) async throws -> [KafkaMessage] {
        let admin = try KafkaAdmin(bootstrapServers: bootstrap)
        let partitions: [KafkaTopicPartition]
        let marks: [KafkaTopicPartition: (low: Int64, high: Int64)]
        do {
            let count = try await admin.partitionCounts([topic])[topic] ?? 0
            partitions = (0..<count).map { KafkaTopicPartition(topic, Int32($0)) }
            marks = try await admin.watermarks(partitions)
        } catch {
            await admin.close()
            throw error
        }
        await admin.close()
        let end = marks.values.map { $0.high - $0.low }.reduce(0, +)
        guard end > 0 else { return [] }
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(
                groupID: "prewarmctl-chaos-\(UUID().uuidString)", bootstrapServers: bootstrap))
        try await consumer.subscribe([topic])
        var messages: [KafkaMessage] = []
        let deadline = ContinuousClock.now + .seconds(120)
        while Int64(messages.count) < end, ContinuousClock.now < deadline {
            messages += try await consumer.poll(maxMessages: 1000, timeoutMilliseconds: 200).messages
        }
        await consumer.close()
        return messages
    }
}
