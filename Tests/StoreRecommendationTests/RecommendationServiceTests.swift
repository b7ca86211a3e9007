import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import MetricsTestKit
import NIOPosix
import Postgres
import PrewarmRuntime
import Redis
import ServiceLifecycle
import StoreRecommendation
import TestSupport
import Testing

@Suite("The read path: levels, single flight, markers, outages", .closesResources)
struct RecommendationServiceTests {
    let stores = (1...8).map {
        StoreInfo(id: Int64($0), name: "stall \($0)", category: Int64($0 % 3), zone: Int64($0 % 2))
    }

    struct Fixture {
        let service: RecommendationService
        let cache: RecommendationCache
        let db: StoreDatabase
        let redis: any RedisClient
        let metrics: TestMetrics

        func databaseReads(_ what: String) throws -> Int64 {
            (try? metrics.expectCounter("prewarm_recommend_database_reads_total", [("what", what)]).totalValue) ?? 0
        }
    }

    private func fixture(
        on topology: RedisTopology = .single, redis configuration: RedisConfiguration? = nil,
        configure: (inout ReadPathOptions) -> Void = { _ in }
    ) async throws -> Fixture {
        let db = try await StoreDatabase.make()
        try await db.addStores(stores)
        // The last run's tally: stall 5 the most visited, then 2, 7, 1. Rebuilt from it, the
        // default is [5, 7, 2, 1]: 5 scores 0.5·90 + 0.3·160 + 0.2·195 = 132, 7 scores
        // 30 + 30 + 39 = 99, 2 scores 35 + 48 + 14 = 97, 1 scores 20 + 30 + 39 = 89 (category =
        // id % 3, zone = id % 2).
        for (store, visits) in [(5, 90), (2, 70), (7, 60), (1, 40), (3, 5)] {
            try await db.execute(
                "INSERT INTO store_popularity (store_id, visits, run) VALUES ($1, $2, 1)", [store, visits])
        }
        // recommend-api's own kind of connection (PREWARM_REDIS_EVENT_LOOPS)
        let redis: any RedisClient & Closable
        switch topology {
        case .single:
            redis = try await RedisEventLoopConnection.connect(
                try configuration ?? TestEnvironment.redis(), eventLoop: MultiThreadedEventLoopGroup.singleton.next())
        case .cluster:
            let nodes = try TestEnvironment.redisClusterNodes()
            redis = try await RedisClusterClient.connect(
                seeds: nodes, configuration: try TestEnvironment.redis(node: nodes[0]),
                transport: .eventLoops(MultiThreadedEventLoopGroup.singleton))
        }
        closeAfterTest { await redis.close() }
        let cache = RecommendationCache(redis: redis, prefix: TestEnvironment.uniqueName("api") + ":")
        var options = ReadPathOptions()
        configure(&options)
        let metrics = TestMetrics()
        let service = RecommendationService(
            cache: cache, data: StoreData(pool: db.pool), options: options, logger: Logger(label: "test"),
            metricsFactory: metrics)
        return Fixture(service: service, cache: cache, db: db, redis: redis, metrics: metrics)
    }

    private func warm(_ fixture: Fixture) async throws {
        try await fixture.cache.writeStores(open: stores, closed: []) { .seconds(600) }
        try await fixture.cache.writeDefault(StoreList(stores: [5, 2, 7, 1], run: 20_261_201_001), ttl: .seconds(600))
        _ = try await fixture.cache.writeLists([(1042, [3, 8, 5, 1])], run: 20_261_201_001) { .seconds(600) }
    }

    @Test("a list reads the same whoever wrote it: the scorer, the random fill's Lua, a hand; a broken one is none")
    func listDecoding() throws {
        let scorer = try JSONEncoder().encode(StoreList(stores: [3, 8, 5, 1], run: 20_261_201_001))
        #expect(StoreList(json: Array(scorer)) == StoreList(stores: [3, 8, 5, 1], run: 20_261_201_001))
        let lua = Array(#"{"run":0,"origin":"random","stores":[7,2]}"#.utf8)
        #expect(StoreList(json: lua) == StoreList(stores: [7, 2], run: 0, origin: "random"))
        let spaced = Array(#"{ "stores": [ 4, 9 ], "run": 5, "origin": "database" }"#.utf8)
        #expect(StoreList(json: spaced) == StoreList(stores: [4, 9], run: 5, origin: "database"))
        #expect(StoreList(json: Array(#"{"stores":[],"run":1,"origin":"scorer"}"#.utf8))?.stores == [])
        #expect(StoreList(json: Array(#"{"stores":[1,,2],"run":1}"#.utf8)) == nil)
        #expect(StoreList(json: Array(#"{"stores":[99999999999999999999]}"#.utf8)) == nil)
        #expect(StoreList(json: Array("not json".utf8)) == nil)
        // Read as JSON, not searched for: a field inside another's string is not the field.
        let nested = Array(
            #"{"note":"\"stores\":[1]","stores":[6],"extra":{"stores":[9]},"origin":"r\u0061ndom"}"#.utf8)
        #expect(StoreList(json: nested) == StoreList(stores: [6], run: 0, origin: "random"))
        #expect(StoreList(json: Array(#"{"run":1,"origin":"scorer"}"#.utf8)) == nil, "no stores")
        #expect(StoreList(json: Array(#"{"stores":[1],"run":"1"}"#.utf8)) == nil, "a run as a string")
    }

    @Test(
        "the near cache: a store's details come from Redis once per lifetime, a change shows after it, a miss is never kept",
        arguments: RedisTopology.allCases)
    func nearCache(on topology: RedisTopology) async throws {
        let fixture = try await fixture(on: topology) { $0.detailsNearCache = .milliseconds(600) }
        try await warm(fixture)
        #expect(try await fixture.service.recommend(user: 1042).stores[0].name == "stall 3")
        // Renamed in Redis (as the scorer's next run would): within the lifetime the answer
        // still has what the process read (its details were not read again) ...
        let renamed = StoreInfo(id: 3, name: "stall 3, renamed", category: 0, zone: 1)
        try await fixture.cache.writeStores(open: stores.map { $0.id == 3 ? renamed : $0 }, closed: []) {
            .seconds(600)
        }
        #expect(try await fixture.service.recommend(user: 1042).stores[0].name == "stall 3")
        // ... and after it, the new name: never staler than one lifetime.
        try await Task.sleep(for: .milliseconds(700))
        #expect(try await fixture.service.recommend(user: 1042).stores[0].name == "stall 3, renamed")
        // A store Redis lacks is read from the database and not remembered as lacking.
        try await fixture.redis.send("DEL", fixture.cache.storeKey(8))
        try await Task.sleep(for: .milliseconds(700))
        let rebuilt = try await fixture.service.recommend(user: 1042)
        #expect(rebuilt.source == .database && rebuilt.stores.map(\.id) == [3, 8, 5, 1])
        #expect(try fixture.databaseReads("details") == 1)
        let next = try await fixture.service.recommend(user: 1042)
        #expect(next.source == .personal && next.stores.map(\.id) == [3, 8, 5, 1], "cached again by the database read")
        #expect(try fixture.databaseReads("details") == 1)
    }

    @Test(
        "each level in turn: personal, default, random, then the database when Redis has nothing",
        arguments: RedisTopology.allCases)
    func levels(on topology: RedisTopology) async throws {
        let fixture = try await fixture(on: topology)
        try await warm(fixture)
        let personal = try await fixture.service.recommend(user: 1042)
        #expect(personal.source == .personal && personal.stores.map(\.id) == [3, 8, 5, 1])
        #expect(personal.stores[0] == stores[2], "with their details")
        let anonymous = try await fixture.service.recommend(user: nil)
        #expect(anonymous.source == .default && anonymous.stores.map(\.id) == [5, 2, 7, 1])
        let noList = try await fixture.service.recommend(user: 9999)
        #expect(noList.source == .default, "a user without a list gets the default")

        try await fixture.redis.send("DEL", fixture.cache.defaultKey)
        let random = try await fixture.service.recommend(user: nil)
        #expect(random.source == .random && random.stores.count == 4)
        #expect(Set(random.stores.map(\.id)).isSubset(of: Set(stores.map(\.id))))
        let again = try await fixture.service.recommend(user: nil)
        #expect(again.stores == random.stores, "stored as the default: the next request agrees")

        try await fixture.redis.send("DEL", fixture.cache.defaultKey, fixture.cache.openKey)
        #expect(try fixture.databaseReads("list") == 0)
        let database = try await fixture.service.recommend(user: nil)
        #expect(database.source == .database && database.stores.map(\.id) == [5, 7, 2, 1])
        #expect(try fixture.databaseReads("list") == 1)
        let rebuilt = try await fixture.service.recommend(user: nil)
        #expect(rebuilt.source == .default, "served from Redis since: no database answer")
        #expect(try fixture.databaseReads("list") == 1, "rebuilt once, then served from Redis")
        #expect(try await fixture.redis.send("SCARD", fixture.cache.openKey) == .integer(8), "open stores restored")
    }

    @Test(
        "with fewer than four open stores the random fill returns what there is and does not loop",
        arguments: RedisTopology.allCases)
    func fewStores(on topology: RedisTopology) async throws {
        let fixture = try await fixture(on: topology)
        try await fixture.redis.send("SADD", fixture.cache.openKey, 2, 7)
        try await fixture.cache.cacheDetails(
            [stores[1], stores[6]], missing: [], ttl: .seconds(60), markerTTL: .seconds(60))
        let answer = try await fixture.service.recommend(user: nil)
        #expect(answer.source == .random && Set(answer.stores.map(\.id)) == [2, 7])
    }

    @Test(
        "details missing for a list: PostgreSQL fills them; a deleted store is marked and read once per marker TTL",
        arguments: RedisTopology.allCases)
    func missingDetailsAndMarkers(on topology: RedisTopology) async throws {
        // Markers live 3 s: the requests below must all fall within one lifetime on a busy CI machine.
        let fixture = try await fixture(on: topology) { $0.missingTTL = .seconds(3) }
        try await warm(fixture)
        _ = try await fixture.cache.writeLists([(77, [5, 404, 2])], run: 20_261_201_001) { .seconds(600) }
        try await fixture.redis.send("DEL", fixture.cache.storeKey(2))
        let first = try await fixture.service.recommend(user: 77)
        #expect(first.source == .database && first.stores.map(\.id) == [5, 2], "the deleted store left out")
        #expect(try fixture.databaseReads("details") == 1)
        for _ in 0..<10 {
            let answer = try await fixture.service.recommend(user: 77)
            #expect(answer.source == .personal && answer.stores.map(\.id) == [5, 2])
        }
        #expect(try fixture.databaseReads("details") == 1, "the marker kept the miss away from the database")
        try await Task.sleep(for: .milliseconds(3200))
        _ = try await fixture.service.recommend(user: 77)
        #expect(try fixture.databaseReads("details") == 2, "once the marker expired, one more read")
        // The store comes back: its details replace the marker on the next miss.
        try await fixture.db.addStores([StoreInfo(id: 404, name: "back again", category: 1, zone: 1)])
        try await Task.sleep(for: .milliseconds(3200))
        #expect(try await fixture.service.recommend(user: 77).stores.map(\.id) == [5, 404, 2])
    }

    @Test(
        "many concurrent requests with the caches gone rebuild them once in the process",
        arguments: RedisTopology.allCases)
    func singleFlightInProcess(on topology: RedisTopology) async throws {
        let fixture = try await fixture(on: topology)
        let answers = try await withThrowingTaskGroup(of: Recommendation.self) { group in
            for _ in 0..<200 { group.addTask { try await fixture.service.recommend(user: nil) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(answers.allSatisfy { $0.stores.map(\.id) == [5, 7, 2, 1] })
        #expect(try fixture.databaseReads("list") == 1)
    }

    @Test(
        "the default list is refreshed ahead of its expiry by one request, not when it is gone",
        arguments: RedisTopology.allCases)
    func earlyRefresh(on topology: RedisTopology) async throws {
        let fixture = try await fixture(on: topology) { $0.refreshAhead = .seconds(3600) }
        try await warm(fixture)
        try await fixture.redis.send("PEXPIRE", fixture.cache.defaultKey, 200)  // about to expire
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(services: [fixture.service], logger: Logger(label: "test")))
        let running = Task { try await group.run() }
        for _ in 0..<50 { _ = try await fixture.service.recommend(user: nil) }
        try await eventually("the default list to be refreshed with a new lifetime") {
            try await fixture.redis.send("PTTL", fixture.cache.defaultKey).integer ?? 0 > 60_000
        }
        #expect(try fixture.databaseReads("list") == 1, "one refresh")
        await group.triggerGracefulShutdown()
        try await running.value
    }

    @Test("Redis down: answers from PostgreSQL; both down: unavailable, quickly")
    func outages() async throws {
        let server = try PrivateRedisServer()
        try await server.start()
        let fixture = try await fixture(redis: server.configuration)
        try await warm(fixture)
        try await server.stop()
        let answer = try await fixture.service.recommend(user: 1042)
        #expect(answer.source == .database && answer.stores.map(\.id) == [5, 7, 2, 1])
        for _ in 0..<20 { _ = try await fixture.service.recommend(user: nil) }
        #expect(try fixture.databaseReads("list") == 1, "remembered for a few seconds, not read per request")

        let closedPort = try TestEnvironment.freePort()
        var unreachable = try TestEnvironment.postgres()
        unreachable.conninfo = "host=127.0.0.1 port=\(closedPort) dbname=prewarm user=prewarm"
        unreachable.connectTimeout = 1
        let pool = PostgresPool(unreachable, maximum: 1)
        closeAfterTest { await pool.close() }
        let dead = RecommendationService(
            cache: fixture.cache, data: StoreData(pool: pool), options: ReadPathOptions(), logger: Logger(label: "t"),
            metricsFactory: fixture.metrics)
        let started = ContinuousClock.now
        await #expect(throws: RecommendationUnavailable.self) { try await dead.recommend(user: 1) }
        #expect(ContinuousClock.now - started < .seconds(5), "no hang")
    }

    @Test("the routes: 200 with the source header, 400 for a bad user id, 503 with a body when nothing answers")
    func routes() async throws {
        let fixture = try await fixture()
        try await warm(fixture)
        let api = RecommendAPI(service: fixture.service)
        try await Application(router: api.router()).test(.router) { client in
            try await client.execute(uri: "/v1/users/1042/store-recommendations", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.init("X-Prewarm-Source")!] == "personal")
                let answer = try JSONDecoder().decode(Recommendation.self, from: Data(response.body.readableBytesView))
                #expect(answer.userID == 1042 && answer.stores.map(\.id) == [3, 8, 5, 1])
            }
            for bad in ["abc", "0", "-5", "99999999999999999999", "9223372036854775808", "+5", "007", "5%20", "1e3"] {
                try await client.execute(uri: "/v1/users/\(bad)/store-recommendations", method: .get) { response in
                    #expect(response.status == .badRequest, "\(bad)")
                    #expect(String(buffer: response.body).contains("positive 64-bit integer"))
                }
            }
            let long = String(repeating: "7", count: 10_000) + "x"
            try await client.execute(uri: "/v1/users/\(long)/store-recommendations", method: .get) { response in
                #expect(response.status == .badRequest)
                #expect(response.body.readableBytes < 300, "the id is not echoed whole")
            }
            try await client.execute(uri: "/v1/users/\(Int64.max)/store-recommendations", method: .get) { response in
                #expect(response.status == .ok, "the largest id is an id")
            }
            try await client.execute(uri: "/v1/store-recommendations", method: .get) { response in
                #expect(response.headers[.init("X-Prewarm-Source")!] == "default")
            }
        }
    }

    @Test(
        "a default rebuilt from PostgreSQL is served from Redis as the default level; a random one is not refreshed early"
    )
    func sourcesAndRandomLifetime() async throws {
        let fixture = try await fixture { $0.refreshAhead = .seconds(600) }
        let first = try await fixture.service.recommend(user: nil)
        #expect(first.source == .database, "rebuilt from PostgreSQL for this answer")
        let second = try await fixture.service.recommend(user: nil)
        #expect(second.source == .default, "then served from Redis: not a database read")
        #expect(try fixture.databaseReads("list") == 1)

        // A random default (no popularity to rebuild from) is not rebuilt by early refreshes.
        try await fixture.redis.send("DEL", fixture.cache.defaultKey)
        try await fixture.db.execute("DELETE FROM store_popularity")
        try await fixture.cache.writeStores(open: stores, closed: []) { .seconds(600) }
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(services: [fixture.service], logger: Logger(label: "test")))
        let running = Task { try await group.run() }
        let random = try await fixture.service.recommend(user: nil)
        #expect(random.source == .random)
        try await fixture.redis.send("PEXPIRE", fixture.cache.defaultKey, 1000)  // near its end
        for _ in 0..<100 { #expect(try await fixture.service.recommend(user: nil).source == .random) }
        try await Task.sleep(for: .milliseconds(300))
        #expect(try fixture.databaseReads("list") == 1, "no early refresh of a random default")
        await group.triggerGracefulShutdown()
        try await running.value
    }

    @Test("recommend-api reads no Kafka setting and opens no Kafka client: it consumes nothing")
    func noKafka() throws {
        let variables = RecommendAPIWorker.declaredSettings.map(\.variable)
        #expect(!variables.contains { $0.hasPrefix("PREWARM_KAFKA") }, "\(variables)")
        let settings = try WorkerSettings.of(
            RecommendAPIWorker.self, environment: ["PREWARM_POSTGRES_URL": "host=db dbname=prewarm user=prewarm"])
        #expect(settings.kafkaBootstrapServers.isEmpty)
        #expect(!Worker.help(RecommendAPIWorker.self).contains("PREWARM_KAFKA_BOOTSTRAP"))
    }
}
