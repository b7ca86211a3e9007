import Foundation
import Kafka
import Logging
import Postgres
import Redis
import TestSupport
import Testing

@testable import PrewarmRuntime

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Real worker processes (`prewarm-testkit worker`) killed with kill -9 in the middle of a
/// job run's fan-out and of a durable task.
@Suite("Crashes mid-run: kill -9 of a job-run winner and of a task runner", .closesResources)
struct CrashScenarioTests {
    private func worker(_ environment: [String: String]) throws -> (TestProcess, URL) {
        let port = try TestEnvironment.freePort()
        let process = try TestProcess.start(
            "prewarm-testkit", ["worker"],
            environment: environment.merging([
                "PREWARM_ADMIN_PORT": String(port), "PREWARM_ADMIN_HOST": "127.0.0.1", "PREWARM_ADMIN_TOKEN": "t0ken",
            ]) { $1 })
        closeAfterTest { await process.stop() }
        return (process, URL(string: "http://127.0.0.1:\(port)")!)
    }

    /// A random day of 2020-2025, `yyyyMMdd`.
    private func oldPeriod() -> String {
        let day = Date(timeIntervalSince1970: Double.random(in: 1_577_836_800...1_735_603_200))
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "Asia/Shanghai")!
        let parts = calendar.dateComponents([.year, .month, .day], from: day)
        return String(format: "%04d%02d%02d", parts.year!, parts.month!, parts.day!)
    }

    private func post(_ url: URL) async throws -> Int {
        var request = URLRequest(url: url)
        request.httpMethod = "POST"
        request.setValue("Bearer t0ken", forHTTPHeaderField: "Authorization")
        let (_, response) = try await URLSession.shared.data(for: request)
        return (response as? HTTPURLResponse)?.statusCode ?? 0
    }

    @Test(
        "the winner killed mid-fan-out: another pod finishes the run, every batch is worked, the run is done once",
        .enabled(
            if: TestEnvironment.broker.evictsDeadMembers, "kills a consumer: needs a broker that evicts dead members"))
    func winnerKilled() async throws {
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        closeAfterTest { await redis.close() }
        let topic = try await TestEnvironment.createTopic(partitions: 2)
        try await TestEnvironment.createTopic(named: topic + ".dlq", partitions: 1)
        let prefix = TestEnvironment.uniqueName("fan")
        let environment = [
            "PREWARM_TESTKIT_MODE": "fan-out", "PREWARM_TESTKIT_TOPIC": topic,
            "PREWARM_TESTKIT_GROUP": TestEnvironment.uniqueName("group"), "PREWARM_TESTKIT_PREFIX": prefix,
            "PREWARM_TESTKIT_ITEMS": "200", "PREWARM_TESTKIT_DELAY_MS": "300", "PREWARM_JOB_LEASE_S": "2",
            "PREWARM_JOB_CHECK_S": "1",
        ]
        let (winner, winnerURL) = try worker(environment)
        let (survivor, survivorURL) = try worker(environment)
        try await winner.waitUntilAnswering(winnerURL)
        try await survivor.waitUntilAnswering(survivorURL)
        // A period of its own: the job's name is the testkit's, shared by every run of this test.
        let period = oldPeriod()
        #expect(
            try await post(
                winnerURL.appendingPathComponent("jobs/testkit-fan/trigger").appending(queryItems: [
                    .init(name: "period", value: period)
                ])) == 202)
        let runs = JobRuns(
            redis: redis, settings: JobRunSettings(), owner: "test", logger: Logger(label: "t"), alerts: nil)
        try await eventually("the winner to produce a few batches") {
            try await runs.progress(job: "testkit-fan", period: period)?.batchesProduced ?? 0 >= 5
        }
        winner.kill()
        try await eventually(timeout: .seconds(90), "the survivor to finish the run") {
            try await runs.progress(job: "testkit-fan", period: period)?.state == .succeeded
        }
        let progress = try #require(try await runs.progress(job: "testkit-fan", period: period))
        #expect(progress.takeovers == 1)
        #expect(progress.batchesTotal == 20 && progress.batchesDone == 20 && progress.itemsDone == 200)
        let counts = try await redis.send("HVALS", prefix).array?.compactMap(\.integer) ?? []
        #expect(counts.count == 200, "every id worked")
        #expect(counts.filter { $0 > 1 }.count <= 10, "at most the batch in flight at the crash twice")
        #expect(
            try await redis.send("EXISTS", JobRuns.doneKey(job: "testkit-fan", period: period)) == .integer(1))
        survivor.signal(SIGTERM)
        #expect(try await survivor.child.wait(timeout: .seconds(30)) == 0)
    }

    @Test(
        "a batch whose handler traps kills three pods, then is set aside: the run goes on and ends partial, alerted",
        .enabled(
            if: TestEnvironment.broker.evictsDeadMembers, "kills a consumer: needs a broker that evicts dead members")
    )
    func batchThatKillsPods() async throws {
        // A database of its own: the pods of the other fan-out test here run the same job and
        // would take over this test's run (and this test's pods theirs).
        let redis = try await TestEnvironment.emptyRedisDatabase(15)
        let topic = try await TestEnvironment.createTopic(partitions: 2)
        try await TestEnvironment.createTopic(named: topic + ".dlq", partitions: 1)
        let prefix = TestEnvironment.uniqueName("poison")
        let environment = [
            "PREWARM_TESTKIT_MODE": "fan-out", "PREWARM_TESTKIT_TOPIC": topic,
            "PREWARM_TESTKIT_GROUP": TestEnvironment.uniqueName("group"), "PREWARM_TESTKIT_PREFIX": prefix,
            "PREWARM_TESTKIT_ITEMS": "100", "PREWARM_TESTKIT_TRAP_ID": "55", "PREWARM_JOB_LEASE_S": "2",
            "PREWARM_JOB_CHECK_S": "1", "PREWARM_REDIS_DB": "15",
        ]
        var pods = try (0..<2).map { _ in try worker(environment) }
        for (pod, url) in pods { try await pod.waitUntilAnswering(url) }
        let period = oldPeriod()
        let since = Date()
        #expect(
            try await post(
                pods[0].1.appendingPathComponent("jobs/testkit-fan/trigger").appending(queryItems: [
                    .init(name: "period", value: period)
                ])) == 202)
        let runs = JobRuns(
            redis: redis, settings: JobRunSettings(), owner: "test", logger: Logger(label: "t"), alerts: nil)
        // Pods that die are started again, as Kubernetes would.
        var deaths = 0
        try await eventually(timeout: .seconds(150), "the run to end without the batch that kills its pods") {
            for index in pods.indices where pods[index].0.child.exitStatus() != nil {
                deaths += 1
                pods[index] = try worker(environment)
            }
            return try await runs.progress(job: "testkit-fan", period: period)?.isFinished == true
        }
        let progress = try #require(try await runs.progress(job: "testkit-fan", period: period))
        #expect(progress.state == .partial, "one batch set aside: not succeeded")
        #expect(progress.batchesFailed == 1 && progress.batchesDone == 9)
        #expect(progress.itemsFailed == 10 && progress.itemsDone == 90)
        #expect(deaths == 3, "three pods died in the batch, the fourth consumer set it aside")
        let counts = try await redis.send("HKEYS", prefix).array?.compactMap(\.string).compactMap { Int($0) } ?? []
        #expect(Set(counts) == Set(1...100).subtracting(51...60), "every other id worked")
        let alerts = try await Alerts.recent(redis, count: 200).filter {
            $0.kind == "job-batch-set-aside" && $0.details["period"] == period && $0.at >= since
        }
        #expect(alerts.count == 1)
        let letters = try await TestEnvironment.read(topic + ".dlq", count: 1)
        #expect(letters.first?.header(DeadLetter.Header.errorClass)?.stringValue == "BatchKilledConsumers")
        for (pod, _) in pods { pod.signal(SIGTERM) }
    }

    @Test(
        "a task runner killed mid-task: another pod rescues it once its heartbeat stops and resumes it from its checkpoint"
    )
    func runnerKilled() async throws {
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        closeAfterTest { await redis.close() }
        let prefix = TestEnvironment.uniqueName("steps")
        let environment = [
            "PREWARM_TESTKIT_MODE": "tasks", "PREWARM_TESTKIT_GROUP": TestEnvironment.uniqueName("group"),
            "PREWARM_TESTKIT_TOPIC": try await TestEnvironment.createTopic(partitions: 1),
            "PREWARM_TESTKIT_PREFIX": prefix,
            "PREWARM_TESTKIT_ITEMS": "30", "PREWARM_TESTKIT_DELAY_MS": "200", "PREWARM_TASK_HEARTBEAT_S": "1",
            "PREWARM_TASK_STALE_AFTER_S": "3",
        ]
        let postgres = try await PostgresConnection.connect(try TestEnvironment.postgres())
        closeAfterTest { await postgres.close() }
        let (first, _) = try worker(environment)
        let key = TestEnvironment.uniqueName("task")
        let queue = TaskQueue(pool: PostgresPool(postgres), settings: TaskSettings())
        try await eventually("the runtime tables to exist") {
            try await postgres.query("SELECT to_regclass('prewarm_tasks') IS NOT NULL").first?[0].bool == true
        }
        _ = try await queue.enqueue(kind: "testkit", key: key, payload: Payload(shop: 1))
        // Its start on a loaded machine (and the group join on noida, which takes ~30 s) comes first.
        try await eventually(timeout: .seconds(90), "the first runner to be part-way") {
            try await queue.task(kind: "testkit", key: key)?.done ?? 0 >= 80
        }
        first.kill()
        let (_, _) = try worker(environment)
        try await eventually(timeout: .seconds(60), "the task to be rescued and finished") {
            try await queue.task(kind: "testkit", key: key)?.state == .succeeded
        }
        let task = try #require(try await queue.task(kind: "testkit", key: key))
        #expect(task.attempts == 2 && task.done == 300)
        let values = try await redis.send("HVALS", prefix).array?.compactMap(\.integer) ?? []
        #expect(values.count == 30, "every step done")
        #expect(values.filter { $0 > 1 }.count <= 1, "at most the step in flight at the crash twice")
    }

    @Test("prewarmctl status --json shows a run in progress with its progress")
    func statusJSON() async throws {
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        closeAfterTest { await redis.close() }
        let job = TestEnvironment.uniqueName("job")
        let runs = JobRuns(
            redis: redis, settings: JobRunSettings(), owner: "pod-7", logger: Logger(label: "t"), alerts: nil)
        guard
            case .started(let lease) = try await runs.claim(
                job: job, period: "20261201", due: Date(), force: false, deadline: Date().addingTimeInterval(3600))
        else {
            Issue.record("the run did not start")
            return
        }
        try await lease.record([
            ("items_expected", 1000), ("batches_expected", 5), ("batches_produced", 2), ("items_produced", 400),
        ])
        let output = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("status"))
            .path
        let (status, stderr) = try await TestProcess.runTool(
            "/bin/sh", ["-c", "\(TestProcess.root.path)/.build/debug/prewarmctl status --json > \(output)"])
        #expect(status == 0, "\(stderr)")
        let data = try Data(contentsOf: URL(fileURLWithPath: output))
        let fleet = try JSONDecoder.prewarm.decode(FleetStatus.self, from: data)
        let run = try #require(fleet.runs.first { $0.job == job })
        #expect(run.state == .running && run.leased && run.owner == "pod-7")
        #expect(run.batchesProduced == 2 && run.itemsExpected == 1000)
        #expect(run.deadlineAt != nil)
        let (textStatus, _) = try await TestProcess.runTool(
            "/bin/sh", ["-c", "\(TestProcess.root.path)/.build/debug/prewarmctl status > \(output)"])
        #expect(textStatus == 0)
        let text = try String(contentsOfFile: output, encoding: .utf8)
        #expect(text.contains(job) && text.contains("running"))
    }
}
