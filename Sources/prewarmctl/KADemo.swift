import BlockingIO
import Foundation
import KAPrewarm
import Kafka
import Postgres
import PrewarmConfiguration
import PrewarmRuntime
import Redis

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// `make demo`, part three: key-account shops (one with 100,000 users) booked for live
/// streams; two ka-prewarmer pods pre-warm them from `live.reservation.v1`, one of them is
/// killed mid-task and the other resumes from the checkpoint; a duplicate reservation is
/// skipped and alerted, bad ones dead-lettered; then the keys and their TTLs in Redis.
extension Demo {
    /// The demo's shops: (id, name, users). The last is too small to be a key account.
    static let kaShops: [(id: Int64, name: String, users: Int)] = [
        (8801, "West Lake flagship", 100_000), (8802, "Riverside tea house", 20_000),
        (8803, "Night market noodles", 5_000), (8804, "Corner bakery", 300),
    ]

    func showKAPrewarm(db: PostgresConnection, cache: RedisConnection) async throws {
        try await withPods { try await kaPrewarm(db: db, cache: cache, pods: &$0) }
    }

    private func kaPrewarm(db: PostgresConnection, cache: RedisConnection, pods: inout [ChildProcess]) async throws {
        print("")
        var started = ContinuousClock.now
        try await writeKAShops(db)
        print(
            "ka:           \(Self.kaShops.count) shops in PostgreSQL ("
                + Self.kaShops.map { "\($0.name): \($0.users) users" }.joined(separator: ", ") + ") in "
                + format(.now - started))

        // Two pods, as a deployment would run them; short heartbeats so the demo's kill is
        // noticed in seconds.
        let token = UUID().uuidString
        let settings = [
            "PREWARM_TASK_HEARTBEAT_S": "1", "PREWARM_TASK_STALE_AFTER_S": "3", "PREWARM_KA_LEASE_S": "4",
            "PREWARM_KA_MAX_DB_ROWS_PER_S": "25000", "PREWARM_KA_MAX_WRITERS": "2",
        ]
        let ports = try await startPods("ka-prewarmer", count: 2, token: token, settings: settings, into: &pods)

        // Tonight's streams, each booked on live.reservation.v1, and what upstream gets wrong.
        let topic = TopicCatalog.liveReservation.name
        let start = try await highWatermarks(TopicSpec.deadLetterTopic(of: topic))
        let base = Int64(Date().timeIntervalSince1970) % 1_000_000 * 100
        let tonight = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 / 60).rounded(.up) * 60 + 3600)
        let bookings = Self.kaShops.enumerated().map { index, shop in
            Reservation(
                reservationID: "demo-\(base + Int64(index))", liveID: base + Int64(index), shopID: shop.id,
                startsAt: tonight.addingTimeInterval(Double(index) * 600),
                endsAt: tonight.addingTimeInterval(Double(index) * 600 + 7200))
        }
        var messages = try bookings.map { try $0.message(topic: topic) }
        messages.append(try bookings[1].message(topic: topic))  // the same reservation again
        messages.append(
            try Reservation(
                reservationID: "demo-bad-1", liveID: base + 50, shopID: 9999, startsAt: tonight,
                endsAt: tonight.addingTimeInterval(3600)
            ).message(topic: topic))
        var ending = bookings[0]
        ending.reservationID = "demo-bad-2"
        ending.liveID = base + 51
        ending.endsAt = ending.startsAt
        messages.append(try ending.message(topic: topic))
        try await produce(
            messages.map { (String(decoding: $0.key ?? [], as: UTF8.self), String(decoding: $0.value, as: UTF8.self)) },
            to: topic)
        print(
            "kafka:        \(bookings.count) reservations to \(topic) (streams from \(clock(tonight))), "
                + "the second one twice, one for an unknown shop, one ending as it starts")
        started = .now

        // Watch the big one; kill the pod working it a third of the way through.
        let big = String(bookings[0].liveID)
        var killed: (pod: Int, done: Int64)?
        let deadline = ContinuousClock.now + .seconds(300)
        var lastShown = ContinuousClock.now - .seconds(10)
        while ContinuousClock.now < deadline {
            let fleet = try await FleetStatus.read(
                redis: cache, postgres: db, runsSince: Date().addingTimeInterval(-600))
            let ours = fleet.tasks.filter { $0.task.kind == KAPrewarmTask.kind && Int64($0.task.key) ?? 0 >= base }
            if ContinuousClock.now - lastShown >= .seconds(1) {
                print("status:       +\(format(.now - started))")
                for entry in ours {
                    print("                " + StatusView(status: fleet, timeZone: timeZone).line(entry))
                }
                lastShown = .now
            }
            if killed == nil, let task = ours.first(where: { $0.task.key == big })?.task, let total = task.total,
                task.state == .running, task.done * 3 >= total, let owner = task.owner,
                let index = pods.firstIndex(where: { owner.hasSuffix(":\($0.pid)") })
            {
                pods[index].signal(SIGKILL)
                _ = try await pods[index].wait(timeout: .seconds(10))
                let checkpoint =
                    try await db.query(
                        "SELECT done FROM prewarm_tasks WHERE kind = $1 AND key = $2", [KAPrewarmTask.kind, big]
                    ).first?[0].int64 ?? task.done
                killed = (index, checkpoint)
                print(
                    "kill -9:      ka-prewarmer-\(index + 1) (pid \(pods[index].pid)), which held live \(big), its last "
                        + "checkpoint at \(checkpoint)/\(total) users; the other pod takes over once its heartbeat stops"
                )
            }
            // The console's picture (make console-screenshot): the other pod going on from the checkpoint.
            if let killed, let task = ours.first(where: { $0.task.key == big })?.task, task.done > killed.done {
                console.screenshotOnce()
            }
            if ours.count == bookings.count - 1, ours.allSatisfy({ $0.task.state == .succeeded }) { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        let fleet = try await FleetStatus.read(redis: cache, postgres: db, runsSince: Date().addingTimeInterval(-600))
        print("status:       +\(format(.now - started)), done")
        for entry in fleet.tasks where entry.task.kind == KAPrewarmTask.kind && Int64(entry.task.key) ?? 0 >= base {
            print("                " + StatusView(status: fleet, timeZone: timeZone).line(entry))
        }
        if let killed {
            let survivor = logDirectory + "/ka-prewarmer-\(2 - killed.pod).log"
            let resumed = (try? String(contentsOfFile: survivor, encoding: .utf8))?.split(separator: "\n").first {
                $0.contains("resuming from its checkpoint") && $0.contains("live=\(big)")
            }
            if let resumed, let cursor = resumed.split(separator: " ").first(where: { $0.hasPrefix("cursor=") }) {
                print(
                    "resume:       ka-prewarmer-\(2 - killed.pod) resumed live \(big) from its checkpoint (\(cursor))")
            }
        }
        guard
            fleet.tasks.filter({ $0.task.kind == KAPrewarmTask.kind && Int64($0.task.key) ?? 0 >= base })
                .allSatisfy({ $0.task.state == .succeeded })
        else { throw DemoFailure("a pre-warm did not succeed; see \(logDirectory)/ka-prewarmer-*.log") }

        for alert in try await Alerts.recent(cache, count: 50).reversed()
        where alert.kind.hasPrefix("ka-") && Int64(alert.details["live"] ?? "") ?? 0 >= base {
            print("alert:        \(alert.kind): \(alert.message.prefix(140))")
        }
        try await showDeadLetters(from: start, expected: 2)
        if !fleet.tasks.contains(where: { $0.task.key == String(bookings[3].liveID) }) {
            print(
                "skipped:      \(Self.kaShops[3].name) (\(Self.kaShops[3].users) users) is below "
                    + "PREWARM_KA_MIN_USERS: not a key account, no task")
        }

        // What the hot path will read.
        let kaCache = KACache(redis: cache)
        for (index, shop) in Self.kaShops.prefix(3).enumerated() {
            let keys = try await keys(cache, kaCache.userKeyPattern(shop: shop.id))
            let expiries = try await pexpiretimes(cache, keys)
            let end = bookings[index].endsAt.timeIntervalSince1970
            let after = expiries.map { (Double($0) / 1000 - end) / 60 }
            print(
                "redis:        shop \(shop.id): \(keys.count) ka:user keys + shop, staff, products, marketing; "
                    + String(
                        format: "expire %.1f to %.1f min after the stream ends", after.min() ?? 0, after.max() ?? 0))
        }
        if let staff = try await cache.send("GET", kaCache.staffKey(8801)).string {
            print("redis:        \(kaCache.staffKey(8801)) = \(staff.prefix(120))...")
        }
        if let user = try await cache.send("GET", kaCache.userKey(shop: 8801, user: 42)).string {
            print("redis:        \(kaCache.userKey(shop: 8801, user: 42)) = \(user)")
        }
        let (status, body) = try await get(port: ports[killed.map { 1 - $0.pod } ?? 0], "/v1/ka/tasks/\(big)")
        print("http:         GET /v1/ka/tasks/\(big) -> \(status) \(body)")
    }

    private func writeKAShops(_ db: PostgresConnection) async throws {
        for shop in Self.kaShops {
            try await db.query(
                """
                INSERT INTO ka_shops (shop_id, name, info) VALUES ($1, $2, $3::jsonb)
                ON CONFLICT (shop_id) DO NOTHING
                """, [shop.id, shop.name, "{\"city\": \"Hangzhou\", \"opened\": 2019}"])
            try await db.query(
                """
                INSERT INTO ka_staff (staff_id, shop_id, name, role)
                SELECT $1::bigint * 1000 + s, $1::bigint, 'host ' || s, CASE WHEN s = 1 THEN 'anchor' ELSE 'assistant' END
                FROM generate_series(1, 200) s ON CONFLICT DO NOTHING
                """, [shop.id])
            try await db.query(
                """
                INSERT INTO ka_products (product_id, shop_id, name, price_cents, stock)
                SELECT $1::bigint * 100000 + p, $1::bigint, 'item ' || p, 500 + p * 7 % 9000, p % 300
                FROM generate_series(1, 500) p ON CONFLICT DO NOTHING
                """, [shop.id])
            try await db.query(
                """
                INSERT INTO ka_marketing (marketing_id, shop_id, kind, title, details)
                VALUES ($1::bigint * 10 + 1, $1::bigint, 'campaign', 'live-only bundle', '{"discount": 0.8}'),
                       ($1::bigint * 10 + 2, $1::bigint, 'coupon', '20 off 199', '{"threshold": 19900, "off": 2000}')
                ON CONFLICT DO NOTHING
                """, [shop.id])
            try await db.query(
                """
                INSERT INTO ka_shop_users (shop_id, user_id, nickname, level, points, tags)
                SELECT $1::bigint, u, 'fan-' || u, u % 7, u * 13 % 100000, 'live-viewer,coupon-user'
                FROM generate_series(1, $2::bigint) u ON CONFLICT DO NOTHING
                """, [shop.id, shop.users])
        }
    }

    private func keys(_ cache: RedisConnection, _ pattern: String) async throws -> [String] {
        try await cache.keys(matching: pattern, count: 10_000)
    }

    private func pexpiretimes(_ cache: RedisConnection, _ keys: [String]) async throws -> [Int64] {
        var times: [Int64] = []
        for chunk in stride(from: 0, to: keys.count, by: 5000) {
            times += try await cache.pipeline(
                keys[chunk..<min(chunk + 5000, keys.count)].map { RedisCommand("PEXPIRETIME", $0) }
            ).compactMap(\.integer)
        }
        return times
    }

    private func get(port: Int, _ path: String) async throws -> (Int, String) {
        let (data, response) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }

    private func clock(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = timeZone
        formatter.dateFormat = "HH:mm"
        return formatter.string(from: date)
    }
}
