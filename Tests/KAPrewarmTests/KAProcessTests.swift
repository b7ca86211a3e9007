import Foundation
import KAPrewarm
import Kafka
import Logging
import Postgres
import PrewarmConfiguration
import PrewarmFixtures
import PrewarmRuntime
import Redis
import TestSupport
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// The real ka-prewarmer executable, two pods at a time, over a Redis server of the test's
/// own (its command counts tell how many keys were written, duplicates included). The suite
/// runs one test at a time: every pod joins the consumer group `ka-prewarmer`.
@Suite("ka-prewarmer processes", .closesResources, .serialized)
struct KAProcessTests {
    struct Pod {
        let process: TestProcess
        let admin: URL
        var owner: String { ":\(process.pid)" }
    }

    /// A private Redis server with the test environment's password, and a client to it.
    private func redisServer() async throws -> (PrivateRedisServer, RedisConnection) {
        let server = try PrivateRedisServer(password: try TestEnvironment.redisPassword)
        try await server.start()
        closeAfterTest { try? await server.stop() }
        let client = try await RedisConnection.connect(server.configuration)
        closeAfterTest { await client.close() }
        return (server, client)
    }

    private func environment(_ db: KADatabase, _ server: PrivateRedisServer, _ extra: [String: String] = [:])
        -> [String: String]
    {
        db.workerEnvironment.merging(
            [
                "PREWARM_REDIS_HOST": "127.0.0.1", "PREWARM_REDIS_PORT": String(server.port), "PREWARM_REDIS_DB": "0",
                "PREWARM_KA_BATCH_SIZE": "50", "PREWARM_KA_MIN_USERS": "10", "PREWARM_KA_LEASE_S": "3",
                "PREWARM_KA_MAX_WRITERS": "1", "PREWARM_KA_VERIFY_RATIO": "1", "PREWARM_KA_SAFETY_MARGIN_S": "0",
                "PREWARM_TASK_HEARTBEAT_S": "1", "PREWARM_TASK_STALE_AFTER_S": "3",
                "PREWARM_KAFKA_CONSUMER_SESSION_TIMEOUT_MS": "6000",

                "PREWARM_KAFKA_CONSUMER_HEARTBEAT_INTERVAL_MS": "500",
            ].merging(extra) { $1 }
        ) { $1 }
    }

    private func start(_ environment: [String: String]) async throws -> Pod {
        let port = try TestEnvironment.freePort()
        let process = try TestProcess.start(
            "ka-prewarmer", [],
            environment: environment.merging([
                "PREWARM_ADMIN_PORT": String(port), "PREWARM_ADMIN_HOST": "127.0.0.1", "PREWARM_ADMIN_TOKEN": "t0ken",
                "PREWARM_LOG_LEVEL": "info",
            ]) { $1 })
        closeAfterTest { await process.stop() }
        let admin = URL(string: "http://127.0.0.1:\(port)")!
        try await process.waitUntilAnswering(admin)
        return Pod(process: process, admin: admin)
    }

    private func request(
        _ base: URL, _ method: String, _ path: String, token: String? = nil, body: String? = nil
    ) async throws -> (status: Int, body: String) {
        try await adminRequest(base, method, path, token: token, body: body)
    }

    /// Waits for the pod to be given its partitions; if it never is, the test shows its log.
    private func waitInGroup(_ pod: Pod) async throws {
        do {
            try await eventually(timeout: TestEnvironment.broker.groupJoinTimeout, "the pod in the group") {
                (try? await request(pod.admin, "GET", "readyz"))?.status == 200
            }
        } catch {
            Issue.record("the pod's log ends:\n\(pod.process.logTail(lines: 40))")
            throw error
        }
    }

    private func triggerBody(_ booked: Reservation) -> String {
        """
        {"live_id": \(booked.liveID), "shop_id": \(booked.shopID), "starts_at": "\(RFC3339.format(booked.startsAt))",
         "ends_at": "\(RFC3339.format(booked.endsAt))"}
        """
    }

    /// SET commands the server has run, those inside scripts included.
    private func setCalls(_ redis: RedisConnection) async throws -> Int {
        let info = try await redis.send("INFO", "commandstats").string ?? ""
        guard let line = info.split(separator: "\r\n").first(where: { $0.hasPrefix("cmdstat_set:") }),
            let calls = line.split(separator: ",").first?.split(separator: "=").last
        else { return 0 }
        return Int(calls) ?? 0
    }

    private func tasks(_ db: KADatabase) -> TaskQueue {
        TaskQueue(pool: db.pool, settings: TaskSettings())
    }

    private func userKeys(_ redis: RedisConnection, shop: Int64) async throws -> Int {
        try await scan(redis, KACache(redis: redis).userKeyPattern(shop: shop)).count
    }

    @Test("the same reservation on every partition, consumed by two pods: one task, one pre-warm, the rest alerted")
    func duplicateAcrossPods() async throws {
        let (server, redis) = try await redisServer()
        let db = try await KADatabase.make()
        let shop = uniqueID()
        let live = uniqueID()
        try await db.addShop(shop, users: 400)
        let topic = TopicCatalog.liveReservation
        _ = try? await TestEnvironment.createTopic(named: topic.name, partitions: topic.partitions)
        let pods = [try await start(environment(db, server)), try await start(environment(db, server))]
        for pod in pods { try await waitInGroup(pod) }
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(bootstrapServers: try TestEnvironment.kafkaBootstrap))
        closeAfterTest { await producer.close() }
        let booked = reservation(live: live, shop: shop)
        for partition in 0..<Int32(topic.partitions) {
            var message = try booked.message(topic: topic.name)
            message.partition = partition
            _ = try await producer.send(message)
        }
        try await eventually(timeout: .seconds(90), "the pre-warm to succeed") {
            try await tasks(db).task(kind: KAPrewarmTask.kind, key: String(live))?.state == .succeeded
        }
        try await eventually(timeout: .seconds(30), "every copy consumed: five duplicates alerted") {
            try await Alerts.recent(redis, count: 100).filter {
                $0.kind == "ka-duplicate-reservation" && $0.details["live"] == String(live)
            }.count == 5
        }
        #expect(try await db.scalar("SELECT count(*) FROM prewarm_tasks") == 1)
        let task = try #require(try await tasks(db).task(kind: KAPrewarmTask.kind, key: String(live)))
        #expect(task.attempts == 1 && task.done == 400)
        #expect(try await userKeys(redis, shop: shop) == 400)
        // 400 users and 4 shop keys once, the lease, the flag and the measured rate: no key twice.
        let sets = try await setCalls(redis)
        #expect((404...410).contains(sets), "\(sets) SETs")
    }

    @Test(
        "a runner killed mid-task: the other pod resumes from the checkpoint, at most one batch written twice",
        .enabled(
            if: TestEnvironment.broker.evictsDeadMembers, "kills a consumer: needs a broker that evicts dead members"))
    func killedRunner() async throws {
        let (server, redis) = try await redisServer()
        let db = try await KADatabase.make()
        let shop = uniqueID()
        let live = uniqueID()
        try await db.addShop(shop, users: 3000)
        let environment = environment(db, server, ["PREWARM_KA_MAX_DB_ROWS_PER_S": "600"])
        let pods = [try await start(environment), try await start(environment)]
        let answer = try await request(
            pods[0].admin, "POST", "v1/ka/prewarm", token: "t0ken",
            body: triggerBody(reservation(live: live, shop: shop)))
        #expect(answer.status == 202, "\(answer.body)")
        var running: TaskRecord?
        try await eventually(timeout: .seconds(60), "a sixth of the users written") {
            running = try await tasks(db).task(kind: KAPrewarmTask.kind, key: String(live))
            return running?.done ?? 0 >= 500
        }
        let holder = try #require(pods.first { running?.owner?.hasSuffix($0.owner) == true })
        let survivor = try #require(pods.first { $0.process.pid != holder.process.pid })
        holder.process.kill()
        try await eventually(timeout: .seconds(90), "the survivor to finish the pre-warm") {
            try await tasks(db).task(kind: KAPrewarmTask.kind, key: String(live))?.state == .succeeded
        }
        let task = try #require(try await tasks(db).task(kind: KAPrewarmTask.kind, key: String(live)))
        #expect(task.owner?.hasSuffix(survivor.owner) == true || task.owner == nil)
        #expect(task.done == 3000)
        #expect(try await userKeys(redis, shop: shop) == 3000)
        let resumed = TestProcess.lines(survivor.process.logFile).first {
            $0.contains("pre-warm resuming from its checkpoint")
        }
        #expect(resumed != nil, "the survivor resumed from the checkpoint, not from the start")
        // 3000 users, twice the 4 shop keys, two leases with their fences, the flag, the rate
        // (14); the survivor's tries for the lease while the killed runner's lapsed (one per
        // 200 ms over 3.5 s at most, 18); and the batch the killed runner had written but not
        // checkpointed (50 users) at most. A key written again costs three SETs: the
        // transaction's NX refused, the script's NX refused, then the SET keeping the later
        // expiry. Two batches written twice (300 more) would fail this.
        let sets = try await setCalls(redis)
        #expect(sets >= 3000 && sets - 3000 <= 14 + 18 + 3 * 50, "\(sets) SETs")
    }

    @Test(
        "a runner stopped past its lease: after the takeover Redis refuses it, and it writes not one key",
        .enabled(
            if: TestEnvironment.broker.evictsDeadMembers,
            "stops a consumer past its session: needs a broker that evicts dead members"))
    func stoppedRunner() async throws {
        let (server, redis) = try await redisServer()
        let db = try await KADatabase.make()
        let shop = uniqueID()
        let live = uniqueID()
        try await db.addShop(shop, users: 3000)
        let environment = environment(db, server, ["PREWARM_KA_MAX_DB_ROWS_PER_S": "600"])
        let pods = [try await start(environment), try await start(environment)]
        let answer = try await request(
            pods[0].admin, "POST", "v1/ka/prewarm", token: "t0ken",
            body: triggerBody(reservation(live: live, shop: shop)))
        #expect(answer.status == 202, "\(answer.body)")
        var running: TaskRecord?
        try await eventually(timeout: .seconds(60), "a sixth of the users written") {
            running = try await tasks(db).task(kind: KAPrewarmTask.kind, key: String(live))
            return running?.done ?? 0 >= 500
        }
        let stalled = try #require(pods.first { running?.owner?.hasSuffix($0.owner) == true })
        stalled.process.signal(SIGSTOP)
        try await eventually(timeout: .seconds(90), "the other pod to take over and finish") {
            try await tasks(db).task(kind: KAPrewarmTask.kind, key: String(live))?.state == .succeeded
        }
        // Everything gone; then the stalled runner wakes with a batch in hand.
        try await redis.send("FLUSHDB")
        stalled.process.signal(SIGCONT)
        try await eventually(timeout: .seconds(30), "the woken runner to find it lost the task") {
            TestProcess.lines(stalled.process.logFile).contains {
                $0.contains("lease lost") || $0.contains("task lost") || $0.contains("Redis refused")
            }
        }
        // Give it its chance to write (its lease renewal is a third of 3 s away at most).
        try await Task.sleep(for: .seconds(2))
        #expect(try await scan(redis, "ka:*").isEmpty, "not one key written by the stalled runner")
    }

    @Test("the manual trigger: 401 without the token, then the same task as a reservation; prewarmctl too")
    func trigger() async throws {
        let (server, _) = try await redisServer()
        let db = try await KADatabase.make()
        let shop = uniqueID()
        let small = uniqueID()
        try await db.addShop(shop, users: 120)
        try await db.addShop(small, users: 5)
        let pod = try await start(environment(db, server))
        let live = uniqueID()
        let body = triggerBody(reservation(live: live, shop: shop))
        #expect(try await request(pod.admin, "POST", "v1/ka/prewarm", body: body).status == 401)
        #expect(try await request(pod.admin, "POST", "v1/ka/prewarm", token: "wrong", body: body).status == 401)
        #expect(try await scalarTasks(db) == 0, "nothing queued without the token")
        let unknown = triggerBody(reservation(live: uniqueID(), shop: uniqueID()))
        #expect(try await request(pod.admin, "POST", "v1/ka/prewarm", token: "t0ken", body: unknown).status == 404)
        let backwards = body.replacingOccurrences(of: "\"ends_at\"", with: "\"x\"")
        #expect(try await request(pod.admin, "POST", "v1/ka/prewarm", token: "t0ken", body: backwards).status == 400)
        let skipped = try await request(
            pod.admin, "POST", "v1/ka/prewarm", token: "t0ken",
            body: triggerBody(reservation(live: uniqueID(), shop: small)))
        #expect(skipped.status == 200 && skipped.body.contains("\"outcome\":\"skipped\""), "\(skipped.body)")

        let queued = try await request(pod.admin, "POST", "v1/ka/prewarm", token: "t0ken", body: body)
        #expect(queued.status == 202 && queued.body.contains("\"outcome\":\"queued\""), "\(queued.body)")
        try await eventually(timeout: .seconds(60), "the triggered pre-warm to succeed") {
            (try await request(pod.admin, "GET", "v1/ka/tasks/\(live)")).body.contains("\"state\":\"succeeded\"")
        }
        let status = try await request(pod.admin, "GET", "v1/ka/tasks/\(live)")
        let decoded = try JSONDecoder.prewarm.decode(KATaskStatus.self, from: Data(status.body.utf8))
        #expect(decoded.done == 120 && decoded.total == 120 && decoded.retryPending == 0)
        #expect(try await request(pod.admin, "POST", "v1/ka/prewarm", token: "t0ken", body: body).status == 409)
        #expect(try await request(pod.admin, "GET", "v1/ka/tasks/\(uniqueID())").status == 404)

        // prewarmctl queues the same task (forced: the live was warmed).
        let toolEnvironment = environment(db, server)
        let booked = reservation(live: live, shop: shop)
        let arguments = [
            "ka", "prewarm", "--shop", String(shop), "--live", String(live), "--starts-at",
            RFC3339.format(booked.startsAt), "--ends-at", RFC3339.format(booked.endsAt),
        ]
        let again = try await TestProcess.run("prewarmctl", arguments, environment: toolEnvironment)
        #expect(again.status == 4, "a duplicate without --force: \(again.stderr)")
        let forced = try await TestProcess.run("prewarmctl", arguments + ["--force"], environment: toolEnvironment)
        #expect(forced.status == 0, "\(forced.stderr)")
        try await eventually(timeout: .seconds(60), "the forced pre-warm to succeed") {
            let task = try await tasks(db).task(kind: KAPrewarmTask.kind, key: String(live))
            return task?.state == .succeeded && task?.done == 120
        }
    }

    @Test(
        "extreme inputs: live, shop and user Int64.max pre-warmed end to end; every bad reservation dead-lettered once; no partition stops, the pod lives"
    )
    func extremeInputs() async throws {
        let (server, redis) = try await redisServer()
        let db = try await KADatabase.make()
        let top = Int64.max
        try await db.execute("INSERT INTO ka_shops (shop_id, name) VALUES ($1, 'the last shop')", [top])
        try await db.execute(
            "INSERT INTO ka_staff (staff_id, shop_id, name, role) VALUES ($1, $1, 'host', 'host')", [top])
        try await db.execute(
            "INSERT INTO ka_products (product_id, shop_id, name, price_cents) VALUES ($1, $1, 'item', $1)", [top])
        try await db.execute(
            """
            INSERT INTO ka_shop_users (shop_id, user_id, nickname, points)
            SELECT $1, u, 'fan ' || u, $1 FROM unnest(ARRAY[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, $1]::bigint[]) u
            """, [top])
        let pod = try await start(environment(db, server))
        try await waitInGroup(pod)
        let topic = TopicCatalog.liveReservation.name
        let starts = RFC3339.format(Date(timeIntervalSince1970: (Date().timeIntervalSince1970 + 3600).rounded()))
        let ends = RFC3339.format(Date(timeIntervalSince1970: (Date().timeIntervalSince1970 + 7200).rounded()))
        func booking(live: Int64, shop: Int64) -> String {
            #"{"reservation_id": "r-\#(live)", "live_id": \#(live), "shop_id": \#(shop), "starts_at": "\#(starts)", "ends_at": "\#(ends)"}"#
        }
        let bad = ExtremeInputs.bad(
            template: booking(live: 77, shop: top), key: String(top), ids: ["live_id", "shop_id"])
        let good = [
            ExtremeInputs.Input("live and shop Int64.max", key: String(top), json: booking(live: top, shop: top))
        ]
        try await ExtremeInputs.expectDeadLetteredOnce(bad, then: good, to: topic)
        try await eventually(timeout: .seconds(60), "the pre-warm of live Int64.max to succeed") {
            try await tasks(db).task(kind: KAPrewarmTask.kind, key: String(top))?.state == .succeeded
        }
        let cache = KACache(redis: redis)
        #expect(try await redis.send("EXISTS", cache.userKey(shop: top, user: top)) == .integer(1))
        #expect(try await redis.send("EXISTS", cache.shopKey(top)) == .integer(1))
        #expect(try await redis.send("EXISTS", cache.doneKey(live: top)) == .integer(1))
        try await ExtremeInputs.expectCommittedToTheEnd(
            group: TopicCatalog.liveReservation.consumerGroup!, topic: topic)
        #expect(pod.process.child.exitStatus() == nil, "the pod lives")
    }

    private func scalarTasks(_ db: KADatabase) async throws -> Int {
        try await db.scalar("SELECT count(*) FROM prewarm_tasks")
    }
}
