import EntryIngest
import Foundation
import Kafka
import Logging
import PrewarmConfiguration
import PrewarmFixtures
import PrewarmRuntime
import Redis
import StoreRecommendation
import TestSupport
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// The real executables: two store-scorer pods (one killed mid-fan-out) and two recommend-api
/// pods under a burst of requests with the caches gone. Each uses a Redis database of its own.
@Suite("store-scorer and recommend-api processes", .closesResources, .serialized)
struct StoreProcessTests {
    let shanghai = TimeZone(identifier: "Asia/Shanghai")!
    let stores = (1...8).map {
        StoreInfo(id: Int64($0), name: "stall \($0)", category: Int64($0 % 3), zone: Int64($0 % 2))
    }

    private func redis(database: Int) async throws -> RedisConnection {
        try await TestEnvironment.emptyRedisDatabase(database)
    }

    private func start(_ product: String, _ environment: [String: String]) throws -> (TestProcess, URL) {
        let admin = try TestEnvironment.freePort()
        let process = try TestProcess.start(
            product, [],
            environment: environment.merging([
                "PREWARM_ADMIN_PORT": String(admin), "PREWARM_ADMIN_HOST": "127.0.0.1", "PREWARM_ADMIN_TOKEN": "t0ken",
                "PREWARM_LOG_LEVEL": "info",
            ]) { $1 })
        closeAfterTest { await process.stop() }
        return (process, URL(string: "http://127.0.0.1:\(admin)")!)
    }

    @Test(
        "two scorer pods: every active user scored once, the run done once, though its winner was killed",
        .enabled(
            if: TestEnvironment.broker.evictsDeadMembers, "kills a consumer: needs a broker that evicts dead members"))
    func scorersWithACrash() async throws {
        let redis = try await redis(database: 10)
        let db = try await StoreDatabase.make()
        try await db.addStores(stores)
        // 600 users with a visit on each of 8 days of the last fortnight; 40 more on 3 days only.
        let day = ISO8601DateFormatter().date(from: "2026-12-01T04:00:00Z")!
        let days = (0..<8).map { day.addingTimeInterval(-Double($0) * 86_400 * 1.5) }
        try await db.addActivity(users: 1...600, days: days)
        try await db.addActivity(users: 601...640, days: Array(days.prefix(3)))
        for (index, date) in days.enumerated() {
            let key = ActivityWriter.dayKey(LocalDay.text(date, in: shanghai), prefix: "")
            try await redis.send(RedisCommand("SADD", arguments: [key] + (1...(index < 3 ? 640 : 600)).map { $0 }))
        }
        let environment = db.workerEnvironment.merging([
            "PREWARM_REDIS_DB": "10", "PREWARM_SCORE_BATCH_SIZE": "2", "PREWARM_JOB_LEASE_S": "2",
            "PREWARM_JOB_CHECK_S": "1", "PREWARM_KAFKA_CONSUMER_SESSION_TIMEOUT_MS": "6000",

            "PREWARM_KAFKA_CONSUMER_HEARTBEAT_INTERVAL_MS": "500",
        ]) { $1 }
        let (winner, winnerURL) = try start("store-scorer", environment)
        let (survivor, survivorURL) = try start("store-scorer", environment)
        try await winner.waitUntilAnswering(winnerURL)
        try await survivor.waitUntilAnswering(survivorURL)
        var trigger = URLRequest(
            url: URL(string: winnerURL.absoluteString + "/jobs/store-score/trigger?period=20261201")!)
        trigger.httpMethod = "POST"
        trigger.setValue("Bearer t0ken", forHTTPHeaderField: "Authorization")
        let (_, accepted) = try await URLSession.shared.data(for: trigger)
        #expect((accepted as? HTTPURLResponse)?.statusCode == 202)
        let runs = JobRuns(
            redis: redis, settings: JobRunSettings(), owner: "test", logger: Logger(label: "t"), alerts: nil)
        try await eventually(pollEvery: .milliseconds(5), "the winner to be part-way through its fan-out") {
            try await runs.progress(job: StoreScorer.jobName, period: "20261201")?.batchesProduced ?? 0 >= 3
        }
        winner.kill()
        let killedAt = try #require(try await runs.progress(job: StoreScorer.jobName, period: "20261201"))
        #expect(killedAt.state == .running, "killed before its fan-out ended")
        try await eventually(timeout: .seconds(120), "the run to complete") {
            try await runs.progress(job: StoreScorer.jobName, period: "20261201")?.state == .succeeded
        }
        let run = try #require(try await runs.progress(job: StoreScorer.jobName, period: "20261201"))
        #expect(run.takeovers >= 1)
        #expect(run.itemsExpected == 600 && run.itemsDone == 600, "every active user, once")
        #expect(run.batchesTotal == 300 && run.batchesDone == 300)
        let lists = Set(try await redis.keys(matching: "STORE_RECOMMEND_ONE:*")).count
        #expect(lists == 600, "a list for each active user, none for the 40 who came 3 days")
        #expect(try await redis.send("EXISTS", "STORE_RECOMMEND_DEFAULT") == .integer(1))
        #expect(
            try await redis.send("EXISTS", JobRuns.doneKey(job: StoreScorer.jobName, period: "20261201")) == .integer(1)
        )
    }

    @Test("500 concurrent requests on two recommend-api pods with the caches gone: one database rebuild in all")
    func rebuildOnceAcrossPods() async throws {
        _ = try await redis(database: 11)
        let db = try await StoreDatabase.make()
        try await db.addStores(stores)
        for (store, visits) in [(5, 90), (2, 70), (7, 60), (1, 40)] {
            try await db.execute(
                "INSERT INTO store_popularity (store_id, visits, run) VALUES ($1, $2, 1)", [store, visits])
        }
        var pods: [(process: TestProcess, admin: URL, api: URL)] = []
        for _ in 0..<2 {
            let port = try TestEnvironment.freePort()
            let (process, admin) = try start(
                "recommend-api",
                db.workerEnvironment.merging(["PREWARM_REDIS_DB": "11", "PREWARM_HTTP_PORT": String(port)]) { $1 })
            pods.append((process, admin, URL(string: "http://127.0.0.1:\(port)")!))
        }
        for pod in pods { try await pod.process.waitUntilAnswering(pod.admin) }
        let client = DownstreamClient(
            connectTimeout: .seconds(2), callTimeout: .seconds(20), maxConnectionsPerHost: 256)
        closeAfterTest { await client.shutdown() }
        let apis = pods.map(\.api)
        let answers = try await concurrentMap(Array(0..<500), limit: 500) { index in
            let url = apis[index % 2].appendingPathComponent("v1/store-recommendations")
            return try await client.get(url, service: "recommend-api").decode(Recommendation.self)
        }
        #expect(answers.allSatisfy { $0.stores.map(\.id) == [5, 7, 2, 1] })
        var rebuilds = 0.0
        for pod in pods {
            let text = String(
                decoding: try await client.get(pod.admin.appendingPathComponent("metrics"), service: "metrics").body,
                as: UTF8.self)
            for line in text.split(separator: "\n")
            where line.hasPrefix("prewarm_recommend_database_reads_total{") && line.contains("what=\"list\"") {
                rebuilds += Double(line.split(separator: " ").last ?? "") ?? 0
            }
        }
        #expect(rebuilds == 1, "one database rebuild across both pods")
    }

    @Test(
        "extreme inputs: user and store Int64.max scored end to end and served by the API; every bad batch dead-lettered once; no partition stops, the pod lives"
    )
    func extremeInputs() async throws {
        let redis = try await redis(database: 14)
        let db = try await StoreDatabase.make()
        let top = StoreInfo(id: Int64.max, name: "the last stall", category: 1, zone: 1)
        try await db.addStores(stores + [top])
        let day = ISO8601DateFormatter().date(from: "2026-12-02T04:00:00Z")!
        let days = (0..<7).map { day.addingTimeInterval(-Double($0) * 86_400) }
        for user in [Int64(1), Int64.max] {
            for date in days {
                try await db.addVisits(user: user, store: user == 1 ? stores[2] : top, count: 2, at: date)
                let key = ActivityWriter.dayKey(LocalDay.text(date, in: shanghai), prefix: "")
                try await redis.send("SADD", key, user)
            }
        }
        let apiPort = try TestEnvironment.freePort()
        let environment = db.workerEnvironment.merging([
            "PREWARM_REDIS_DB": "14", "PREWARM_JOB_LEASE_S": "2", "PREWARM_JOB_CHECK_S": "1",
            "PREWARM_KAFKA_CONSUMER_SESSION_TIMEOUT_MS": "6000", "PREWARM_KAFKA_CONSUMER_HEARTBEAT_INTERVAL_MS": "500",

            "PREWARM_HTTP_PORT": String(apiPort),
        ]) { $1 }
        let (pod, admin) = try start("store-scorer", environment)
        try await pod.waitUntilAnswering(admin)

        let topic = TopicCatalog.storeRecommendationBatches.name
        let template =
            #"{"job": "store-score", "period": "20261129", "attempt": 1, "batch": 0, "batch_count": 1, "ids": [42], "produced_at": "2026-11-29T02:00:00+08:00"}"#
        let bad =
            ExtremeInputs.bad(template: template, key: "store-score:20261129:0", ids: ["attempt"]) + [
                ExtremeInputs.Input(
                    "an id past int64", key: "store-score:20261129:0",
                    json: template.replacingOccurrences(of: "[42]", with: "[9223372036854775808]")),
                ExtremeInputs.Input(
                    "a negative batch", key: "store-score:20261129:0",
                    json: template.replacingOccurrences(of: #""batch": 0"#, with: #""batch": -1"#)),
                ExtremeInputs.Input(
                    "an empty job", key: "store-score:20261129:0",
                    json: template.replacingOccurrences(of: #""job": "store-score""#, with: #""job": """#)),
            ]
        try await ExtremeInputs.expectDeadLetteredOnce(bad, to: topic)

        // The nightly run over the two users: the largest id is scored like the smallest.
        #expect(
            try await adminRequest(admin, "POST", "jobs/store-score/trigger?period=20261202", token: "t0ken").status
                == 202)
        let runs = JobRuns(
            redis: redis, settings: JobRunSettings(), owner: "test", logger: Logger(label: "t"), alerts: nil)
        try await eventually(timeout: .seconds(60), "the run to succeed") {
            try await runs.progress(job: StoreScorer.jobName, period: "20261202")?.state == .succeeded
        }
        let cache = RecommendationCache(redis: redis)
        #expect(try await cache.list(of: Int64.max)?.stores.first == Int64.max)
        #expect(try await cache.list(of: 1)?.stores.first == stores[2].id)
        try await ExtremeInputs.expectCommittedToTheEnd(
            group: TopicCatalog.storeRecommendationBatches.consumerGroup!, topic: topic)
        #expect(pod.child.exitStatus() == nil, "the pod lives")

        // The API serves the largest user its list, and the largest store's details.
        let (api, apiAdmin) = try start("recommend-api", environment)
        try await api.waitUntilAnswering(apiAdmin)
        let client = DownstreamClient(connectTimeout: .seconds(2), callTimeout: .seconds(10), maxConnectionsPerHost: 4)
        closeAfterTest { await client.shutdown() }
        let answer = try await client.get(
            URL(string: "http://127.0.0.1:\(apiPort)/v1/users/\(Int64.max)/store-recommendations")!,
            service: "recommend-api"
        ).decode(Recommendation.self)
        #expect(answer.source == .personal && answer.userID == Int64.max && answer.stores.first?.id == Int64.max)
    }
}
