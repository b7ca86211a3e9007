import BlockingIO
import EntryIngest
import Foundation
import Kafka
import Postgres
import PrewarmRuntime
import Redis
import StoreRecommendation

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// `make demo`, part two: the store-scorer scores the generated month (a run triggered now,
/// fanned out as batches and worked by the same pod), then recommend-api answers a user with a
/// list, an anonymous request and each degraded level, the keys that force each removed first.
extension Demo {
    func showStoreRecommendations(db: PostgresConnection, cache: RedisConnection, now: Date) async throws {
        try await withPods { try await scoreAndRecommend(cache: cache, now: now, processes: &$0) }
    }

    /// Runs `body` with the worker processes it starts: afterwards every one is stopped
    /// (SIGTERM, then killed by `wait` if it will not stop in time); if `body` fails, killed.
    func withPods(_ body: (inout [ChildProcess]) async throws -> Void) async throws {
        var pods: [ChildProcess] = []
        do {
            try await body(&pods)
        } catch {
            for pod in pods { pod.signal(SIGKILL) }
            throw error
        }
        for pod in pods { pod.signal(SIGTERM) }
        for pod in pods { _ = try? await pod.wait(timeout: .seconds(40)) }
    }

    private func scoreAndRecommend(cache: RedisConnection, now: Date, processes: inout [ChildProcess]) async throws {
        let binaries = URL(fileURLWithPath: workerPath).deletingLastPathComponent()
        let token = UUID().uuidString
        let scorerPort = try FreePort.next()
        var started = ContinuousClock.now
        let scorer = try start(
            binaries.appendingPathComponent("store-scorer").path, port: scorerPort, token: token,
            log: "store-scorer.log")
        processes.append(scorer)
        try await waitForAdmin(port: scorerPort, process: scorer, name: "store-scorer")
        let period = LocalDay.text(now, in: timeZone)
        let (status, body) = try await trigger(port: scorerPort, token: token, job: StoreScorer.jobName, period: period)
        print("")
        print("store-scorer: POST /jobs/\(StoreScorer.jobName)/trigger?period=\(period) -> \(status)")
        let run = try await waitForRun(port: scorerPort, job: StoreScorer.jobName, answer: body)
        let seconds = String(format: "%.2f", run.durationSeconds ?? 0)
        let withStartUp = format(.now - started)
        print(
            "store-scorer: \(run.itemsExpected ?? 0) active users (7+ of the last 30 days), \(run.itemsDone) scored "
                + "in \(run.batchesTotal ?? 0) batches, in \(seconds) s (\(withStartUp) with start-up): \(run.state.rawValue)"
        )
        let recommendations = RecommendationCache(redis: cache)
        let users = try await ActiveUsers(redis: cache, timeZone: timeZone, minimumDays: 7, windowDays: 30)
            .page(
                for: JobRunInfo(job: StoreScorer.jobName, period: period, attempt: run.attempt, forced: true, due: now),
                after: Int64.min, limit: 1)
        let user = users.first ?? 5
        if let list = try await recommendations.list(of: user) {
            print("redis:        STORE_RECOMMEND_ONE:\(user) = \(list.stores) (run \(list.run))")
        }
        if let defaultList = try await recommendations.defaultList() {
            print("redis:        STORE_RECOMMEND_DEFAULT = \(defaultList.list.stores), the popular stores")
        }

        // The read path, and how it degrades.
        started = .now
        let apiPort = try FreePort.next()
        let adminPort = try FreePort.next()
        let api = try start(
            binaries.appendingPathComponent("recommend-api").path, port: adminPort, token: token,
            log: "recommend-api.log", extra: ["PREWARM_HTTP_PORT": String(apiPort), "PREWARM_HTTP_HOST": "127.0.0.1"])
        processes.append(api)
        try await waitForAdmin(port: adminPort, process: api, name: "recommend-api")
        print("recommend-api: up in \(format(.now - started)); GET http://127.0.0.1:\(apiPort)/v1/...")
        func ask(_ path: String, _ what: String) async throws {
            let (data, response) = try await URLSession.shared.data(
                from: URL(string: "http://127.0.0.1:\(apiPort)\(path)")!)
            let status = (response as? HTTPURLResponse)?.statusCode ?? 0
            if let answer = try? JSONDecoder().decode(Recommendation.self, from: data) {
                let names = answer.stores.map(\.name).joined(separator: ", ")
                print("recommend-api: \(what): \(status) source=\(answer.source.rawValue): \(names)")
            } else {
                print("recommend-api: \(what): \(status) \(String(decoding: data, as: UTF8.self))")
            }
        }
        try await ask("/v1/users/\(user)/store-recommendations", "user \(user) (has a list)")
        try await ask("/v1/store-recommendations", "anonymous")
        try await ask("/v1/users/abc/store-recommendations", "a bad user id")
        try await cache.send("DEL", recommendations.defaultKey)
        try await ask("/v1/store-recommendations", "default list deleted")
        try await cache.send("DEL", recommendations.defaultKey, recommendations.openKey)
        try await ask("/v1/store-recommendations", "default list and open-store ids deleted")
        if let list = try await recommendations.list(of: user), let first = list.stores.first {
            try await cache.send("DEL", recommendations.storeKey(first))
            try await ask("/v1/users/\(user)/store-recommendations", "user \(user), store \(first)'s details deleted")
        }
    }

    /// `count` pods of the worker `product` (next to entry-ingest), as a deployment would run
    /// them, each up before this returns their admin ports; `pods` gets them as they start.
    func startPods(
        _ product: String, count: Int, token: String, settings: [String: String], into pods: inout [ChildProcess]
    ) async throws -> [Int] {
        let path = URL(fileURLWithPath: workerPath).deletingLastPathComponent().appendingPathComponent(product).path
        var ports: [Int] = []
        for index in 0..<count {
            let port = try FreePort.next()
            ports.append(port)
            pods.append(try start(path, port: port, token: token, log: "\(product)-\(index + 1).log", extra: settings))
        }
        // Every pod in the group with its partitions (`/readyz`), so that the group's first
        // rebalances are over before the demo triggers anything: otherwise the first run's
        // progress stands still while the pods join.
        for (index, port) in ports.enumerated() {
            try await waitForAdmin(
                port: port, process: pods[pods.count - count + index], name: "\(product)-\(index + 1)",
                route: "readyz")
        }
        return ports
    }

    /// Waits for the worker's admin `route` to answer 200 (`healthz`: up; `readyz`: in its
    /// group and its dependencies reachable).
    func waitForAdmin(port: Int, process: ChildProcess, name: String, route: String = "healthz") async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if let status = process.exitStatus() {
                throw DemoFailure("\(name) exited with status \(status); see \(logDirectory)/\(name).log")
            }
            if let (_, response) = try? await URLSession.shared.data(
                from: URL(string: "http://127.0.0.1:\(port)/\(route)")!),
                (response as? HTTPURLResponse)?.statusCode == 200
            {
                return
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw DemoFailure("\(name) did not answer /\(route) in 60 s; see \(logDirectory)/\(name).log")
    }
}
