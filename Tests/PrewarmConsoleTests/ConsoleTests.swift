import AsyncHTTPClient
import Foundation
import Logging
import MetricsTestKit
import NIOCore
import Postgres
import PrewarmConsole
import PrewarmRuntime
import Redis
import TestSupport
import Testing

/// The console against real Redis and PostgreSQL (and, for a job trigger, a real worker
/// process), read by a real browser where a person would look.
@Suite("prewarmctl console", .closesResources)
struct ConsoleTests {
    static let token = "console-test-token"

    struct Payload: Codable, Sendable { let live: Int64 }

    /// A console on a free port over the test's schema; returns its base URL.
    func startConsole(schema: TestSchema, redis: any RedisClient, token: String? = token) async throws -> String {
        let logger = Logger(label: "console-test")
        let sampler = ConsoleSampler(
            redis: redis, postgres: schema.pool, kafka: nil, actionsEnabled: token != nil,
            interval: .milliseconds(300), logger: logger)
        let server = ConsoleServer(
            sampler: sampler, redis: redis, postgres: schema.pool, kafka: nil, token: token, logger: logger)
        let ports = AsyncStream<Int>.makeStream()
        let task = Task { try await server.run(host: "127.0.0.1", port: 0) { ports.continuation.yield($0) } }
        closeAfterTest {
            task.cancel()
            _ = try? await task.value
        }
        var iterator = ports.stream.makeAsyncIterator()
        let port = try #require(await iterator.next())
        return "http://127.0.0.1:\(port)"
    }

    func schema() async throws -> TestSchema {
        try await TestSchema.make("console") { pool in
            try await pool.withConnection {
                _ = try await Migrator.migrate($0, RuntimeSchema.migrations, logger: Logger(label: "console-test"))
            }
        }
    }

    func redis() async throws -> RedisConnection {
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        closeAfterTest { await redis.close() }
        return redis
    }

    @Test(
        "in a browser: a task's progress moves as it works, an alert appears, and after the token is entered the retry button queues the failed task again"
    )
    func browser() async throws {
        let db = try await schema()
        let redis = try await redis()
        let queue = TaskQueue(pool: db.pool, settings: TaskSettings())
        let kind = "console-test"
        let key = TestEnvironment.uniqueName("live")
        _ = try await queue.enqueue(
            kind: kind, key: key, payload: Payload(live: .max), deadline: Date().addingTimeInterval(3600),
            total: 800_000)
        let task = try #require(try await queue.claim(kind: kind, owner: "pod-a", limit: 1).first)
        #expect(
            try await queue.checkpoint(id: task.id, owner: "pod-a", cursor: "1", done: 200_000, total: nil, rate: 50))
        let base = try await startConsole(schema: db, redis: redis)
        let alerts = Alerts(
            worker: "console-test", logger: Logger(label: "t"), metricsFactory: TestMetrics(), redis: redis)
        closeAfterTest { await alerts.close() }
        let alertKind = TestEnvironment.uniqueName("console-alert")
        let row = "[data-task=\"\(kind):\(key)\"]"
        // A worker process with a scheduled job, on the pod board: the page's "run now" button.
        let (pod, job, counts) = try await startFanOutPod()

        try await HeadlessChromium.withPage(base + "/") { page in
            try await page.waitForText("\(row) .progress", "the task's first checkpoint") { $0 == "200,000 / 800,000" }
            // ETA at 50/s for 600,000 users: 3 h 20 min, past the deadline in an hour: it stands out.
            try await page.waitForText(row, "the deadline risk") { $0.contains("will miss its deadline") }

            #expect(
                try await queue.checkpoint(
                    id: task.id, owner: "pod-a", cursor: "2", done: 640_000, total: nil, rate: 50))
            try await page.waitForText("\(row) .progress", "progress moving without a reload") {
                $0 == "640,000 / 800,000"
            }
            try await page.waitForText(row, "no more risk at 160,000 to go (53 min)") { !$0.contains("will miss") }

            alerts.raise(alertKind, "the console test's alert")
            try await page.waitForText("[data-alert=\"\(alertKind)\"]", "the alert") {
                $0.contains("the console test's alert")
            }

            // An error that is markup is shown as text, never run.
            let markup = "downstream said no <img src=x onerror=\"window.pwned = 1\">"
            _ = try await queue.fail(id: task.id, owner: "pod-a", error: markup, retryable: false, retryIn: .seconds(1))
            try await page.waitForText(row, "the failure and its error, as text") {
                $0.contains("failed") && $0.contains(markup)
            }
            #expect(try await page.string("String(window.pwned)") == "undefined")

            // A wrong token is refused; the right one is accepted and never lands in a URL.
            try await page.type("wrong", into: "#token")
            try await page.click("#use-token")
            try await page.waitForText("#token-state", "the wrong token refused") { $0 == "token refused" }
            try await page.type(Self.token, into: "#token")
            try await page.click("#use-token")
            try await page.waitForText("#token-state", "the token accepted") { $0 == "token accepted" }
            #expect(try await page.string("location.href") == base + "/")

            try await page.click("\(row) button")
            let answer = try await page.waitForText("#answer", "the retry's answer") { $0.contains("202") }
            #expect(answer.contains("queued again from its checkpoint"))
            try await page.waitForText(row, "the task queued again") { $0.contains("queued") }

            // A job run now from the page: sent to the pod, its run appears and finishes.
            try await eventually(timeout: .seconds(120), "the worker on the board, ready") {
                try await PodBoard.read(redis).contains { $0.owner.hasSuffix(":\(pod.pid)") && $0.ready }
            }
            try await page.waitForText("[data-job=\"\(job)\"]", timeout: .seconds(30), "the run-now button") {
                $0 == "run \(job) now"
            }
            try await page.click("[data-job=\"\(job)\"]")
            let triggered = try await page.waitForText("#answer", "the trigger's answer") {
                $0.contains("trigger \(job): 202")
            }
            let period = try #require(triggered.firstMatch(of: #/"period": "([0-9]+)"/#)?.1)
            try await page.waitForText(
                "[data-run=\"\(job)@\(period)\"]", timeout: .seconds(120), "the triggered run, succeeded"
            ) { $0.contains("succeeded") && $0.contains("50 / 50") }
        }
        #expect(try await redis.send("HLEN", counts).integer == 50, "every item of the run worked")
        let after = try #require(try await queue.task(kind: kind, key: key))
        #expect(after.state == .queued)
        #expect(after.done == 640_000, "from its checkpoint")
    }

    @Test("actions need the token: 401 without it, 403 when the console has none; a retry of nothing is 409")
    func actionsNeedTheToken() async throws {
        let db = try await schema()
        let redis = try await redis()
        let base = try await startConsole(schema: db, redis: redis)
        let path = "/api/tasks/console-test/nothing/retry"
        #expect(try await post(base + path, token: nil).status == 401)
        #expect(try await post(base + path, token: "wrong").status == 401)
        let none = try await post(base + path, token: Self.token)
        #expect(none.status == 409 && none.body.contains("no failed or cancelled task"))
        let off = try await startConsole(schema: db, redis: redis, token: nil)
        let refused = try await post(off + path, token: Self.token)
        #expect(refused.status == 403 && refused.body.contains("PREWARM_ADMIN_TOKEN"))
        #expect(try await post(base + "/api/dlq/store.entry.v1.dlq/replay", token: Self.token).status == 404)
    }

    @Test(
        "a job sent to a pod that died after its last beat: 503 naming it, at once, nothing run; a board entry with a URL in place of host:port never gets the token"
    )
    func triggerToADeadPod() async throws {
        let db = try await schema()
        let redis = try await redis()
        let job = "console-dead-\(UInt32.random(in: 0...UInt32.max))"
        let dead = try TestEnvironment.freePort()  // nothing listens there: the pod is gone
        let board = PodBoard(redis: redis)
        func pod(_ owner: String, admin: String) -> PodRecord {
            PodRecord(
                worker: "console-test", owner: owner, admin: admin, group: nil, jobs: [job], ready: true,
                problems: [], startedAt: Date(), seenAt: Date())
        }
        let owners = [TestEnvironment.uniqueName("dead"), TestEnvironment.uniqueName("odd")]
        try await board.publish(pod(owners[0], admin: "127.0.0.1:\(dead)"))
        try await board.publish(pod(owners[1], admin: "evil.example@127.0.0.1:\(dead)/x?"))
        closeAfterTest {
            for owner in owners { try? await board.remove(worker: "console-test", owner: owner) }
        }
        let base = try await startConsole(schema: db, redis: redis)
        let started = ContinuousClock.now
        let answer = try await post(base + "/api/jobs/\(job)/trigger?force=true", token: Self.token)
        #expect(answer.status == 503, "\(answer.body)")
        #expect(answer.body.contains(owners[0]), "names the pod it could not reach")
        #expect(!answer.body.contains(owners[1]), "the odd address was never called")
        #expect(ContinuousClock.now - started < .seconds(10), "a refused connection is not waited on")
    }

    /// A testkit worker process whose job (a name of its own: other tests' pods run theirs) counts
    /// 50 items in a hash; returns the process, the job and the hash.
    func startFanOutPod() async throws -> (TestProcess, String, String) {
        let job = "console-fan-\(UInt32.random(in: 0...UInt32.max))"
        let topic = try await TestEnvironment.createTopic(partitions: 2)
        try await TestEnvironment.createTopic(named: topic + ".dlq", partitions: 1)
        let prefix = TestEnvironment.uniqueName("console-count")
        let pod = try TestProcess.start(
            "prewarm-testkit", ["worker"],
            environment: [
                "PREWARM_TESTKIT_MODE": "fan-out", "PREWARM_TESTKIT_TOPIC": topic, "PREWARM_TESTKIT_ITEMS": "50",
                "PREWARM_TESTKIT_GROUP": TestEnvironment.uniqueName("console-group"), "PREWARM_TESTKIT_PREFIX": prefix,
                "PREWARM_ADMIN_TOKEN": Self.token, "PREWARM_ADMIN_HOST": "127.0.0.1", "PREWARM_ADMIN_PORT": "0",
                "PREWARM_JOB_CHECK_S": "600", "PREWARM_TESTKIT_JOB": job,
            ])
        closeAfterTest {
            pod.signal(SIGKILL)
            _ = try? await pod.child.wait(timeout: .seconds(10))
        }
        return (pod, job, prefix)
    }

    @Test(
        "a job triggered in the console runs on a pod that announced it: accepted once, then 'in progress' or 'already ran' without force; an unknown job is 404"
    )
    func triggerThroughAPod() async throws {
        let db = try await schema()
        let redis = try await redis()
        let (pod, job, prefix) = try await startFanOutPod()
        var announced: PodRecord?
        try await eventually(timeout: .seconds(90), "the pod on the board, ready") {
            announced = try await PodBoard.read(redis).first { $0.owner.hasSuffix(":\(pod.pid)") && $0.ready }
            return announced != nil
        }
        #expect(announced?.jobs == [job])
        #expect(announced?.admin.hasPrefix("127.0.0.1:") == true)

        let base = try await startConsole(schema: db, redis: redis)
        // A day of 2000-2019 as the period: a run of its own, whatever day the test runs on.
        let day = Date(timeIntervalSince1970: Double.random(in: 946_684_800...1_577_750_400))
        let period = Self.day(day)
        let first = try await post(
            base + "/api/jobs/\(job)/trigger?force=true&period=\(period)", token: Self.token)
        #expect(first.status == 202, "\(first.body)")
        #expect(first.body.contains("\"accepted\""))
        let again = try await post(base + "/api/jobs/\(job)/trigger?period=\(period)", token: Self.token)
        #expect(again.status == 409, "\(again.body)")
        #expect(again.body.contains("in progress") || again.body.contains("already ran"))
        let unknown = try await post(base + "/api/jobs/no-such-job/trigger", token: Self.token)
        #expect(unknown.status == 404 && unknown.body.contains(job))
        // The run the console started counts every item once.
        try await eventually(timeout: .seconds(90), "the triggered run's 50 items") {
            try await redis.send("HLEN", prefix).integer == 50
        }
    }

    static func day(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "Asia/Shanghai")!
        let parts = calendar.dateComponents([.year, .month, .day], from: date)
        return String(format: "%04d%02d%02d", parts.year!, parts.month!, parts.day!)
    }

    func post(_ url: String, token: String?) async throws -> (status: Int, body: String) {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 1 << 20)
        return (Int(response.status.code), String(buffer: body))
    }
}
