import Foundation
import Kafka
import PrewarmConfiguration
import PrewarmRuntime
import Redis
import ServiceLifecycle

/// A worker for process tests, declared like the real ones. `PREWARM_TESTKIT_MODE` picks
/// what it does:
/// - `consume`: counts each message of `PREWARM_TESTKIT_TOPIC` in the Redis hash
///   `PREWARM_TESTKIT_PREFIX` (at-least-once shows as counts), pausing
///   `PREWARM_TESTKIT_DELAY_MS` in every batch;
/// - `fan-out`: job `testkit-fan` produces the ids 1...`PREWARM_TESTKIT_ITEMS` in batches
///   of 10 to the topic, pausing the delay before each page; its consumers count each id, and
///   a batch holding `PREWARM_TESTKIT_TRAP_ID` kills its process (a trap in a handler);
/// - `tasks`: runs tasks of kind `testkit`, each `PREWARM_TESTKIT_ITEMS` steps of 10,
///   pausing the delay per step, counting each step in the hash and checkpointing after it;
/// - `hang`: its handler never returns (until cancelled);
/// - `stuck`: its handler never returns, even when cancelled (a call no cancellation reaches);
/// - `idle`: no consumer group; one admin route, `GET /testkit/hello`.
/// Its consumer group is `PREWARM_TESTKIT_GROUP`; the output file `PREWARM_TESTKIT_OUTPUT`
/// hears `started` once it is built.
struct TestkitWorker: WorkerDefinition {
    static let name = "testkit-worker"
    static let abstract = "a worker for process tests"
    static var consumerGroup: String? {
        ["idle", "tasks"].contains(ProcessInfo.processInfo.environment["PREWARM_TESTKIT_MODE"] ?? "")
            ? nil : ProcessInfo.processInfo.environment["PREWARM_TESTKIT_GROUP"]
    }
    static var usesPostgres: Bool {
        ["tasks", "consume"].contains(ProcessInfo.processInfo.environment["PREWARM_TESTKIT_MODE"] ?? "consume")
    }

    static let mode = Setting.text(
        "PREWARM_TESTKIT_MODE", default: "consume", "what the worker does",
        accepted: "consume, fan-out, tasks, hang, stuck, idle")
    static let group = Setting.text("PREWARM_TESTKIT_GROUP", default: nil, "consumer group")
    static let topic = Setting.text("PREWARM_TESTKIT_TOPIC", default: nil, "topic consumed (and fanned out to)")
    static let prefix = Setting.text("PREWARM_TESTKIT_PREFIX", default: "testkit", "Redis hash of the counts")
    static let delay = Setting<Duration>.milliseconds(
        "PREWARM_TESTKIT_DELAY_MS", default: 0, in: 0...600_000, "pause per batch, page or step")
    static let items = Setting.integer("PREWARM_TESTKIT_ITEMS", default: 100, in: 0...1_000_000, "ids or steps")
    static let output = Setting.text("PREWARM_TESTKIT_OUTPUT", default: nil, "where progress lines go")
    static let job = Setting.text(
        "PREWARM_TESTKIT_JOB", default: "testkit-fan",
        "the fan-out job's name (a test's own keeps pods of other tests out)")
    static let trap = Setting.integer(
        "PREWARM_TESTKIT_TRAP_ID", default: 0, in: 0...1_000_000, "a batch holding this id traps (0: none)")
    static let settings = [
        mode.description, group.description, topic.description, prefix.description, delay.description,
        items.description, output.description, trap.description, job.description,
    ]
    static let defaults = [
        "PREWARM_KAFKA_CONSUMER_SESSION_TIMEOUT_MS": "6000", "PREWARM_KAFKA_CONSUMER_HEARTBEAT_INTERVAL_MS": "500",

        "PREWARM_BATCH_MAX_MESSAGES": "20", "PREWARM_BATCH_MAX_WAIT_MS": "100", "PREWARM_ADMIN_PORT": "0",
    ]

    var routes: [TopicRoute] = []
    var jobs: [ScheduledJob] = []
    var services: [any Service] = []
    var adminRoutes: [AdminRoute] = []

    init(context: WorkerContext) async throws {
        let environment = context.environment
        let out = try environment.optionalValue(Self.output).map(Output.init(path:))
        let prefix = try environment.value(Self.prefix)
        let delay = try environment.value(Self.delay)
        let items = try environment.value(Self.items)
        let redis = context.redis
        switch try environment.value(Self.mode) {
        case "consume":
            routes = [
                TopicRoute(
                    topic: try environment.value(Self.topic),
                    handler: Counting(redis: redis, prefix: prefix, delay: delay))
            ]
        case "hang":
            routes = [
                TopicRoute(
                    topic: try environment.value(Self.topic),
                    handler: Counting(redis: redis, prefix: prefix, delay: .seconds(86_400)))
            ]
        case "stuck":
            routes = [TopicRoute(topic: try environment.value(Self.topic), handler: Stuck())]
        case "fan-out":
            let topic = try environment.value(Self.topic)
            jobs = [
                ScheduledJob(
                    name: try environment.value(Self.job), schedule: .daily(hour: 4, minute: 0), catchUp: .skip,
                    work: .fanOut(
                        FanOut(
                            topic: topic, batchSize: 10, source: Numbers(count: items, delay: delay),
                            handler: BatchCounting(
                                redis: redis, prefix: prefix, trap: Int64(try environment.value(Self.trap))))))
            ]
        case "tasks":
            services = [
                TaskRunner(
                    kind: "testkit", queue: try context.tasks,
                    handler: Stepping(redis: redis, prefix: prefix, steps: items, delay: delay), concurrency: 2,
                    owner: context.owner, pollEvery: .milliseconds(200), logger: context.logger, alerts: context.alerts)
            ]
            routes = []
        default:
            adminRoutes = [.get("/testkit/hello") { _ in .json(200, ["hello": "from a worker without a group"]) }]
        }
        out?.write("started")
    }

    struct Counting: TopicHandler {
        let redis: any RedisClient
        let prefix: String
        let delay: Duration

        func decode(_ message: KafkaMessage) throws -> String { message.valueString }

        func handle(_ batch: [Decoded<String>]) async throws {
            try await redis.send("SET", prefix + ":in-batch", batch[0].message.offset)
            try await Task.sleep(for: delay)
            _ = try await redis.pipeline(batch.map { RedisCommand("HINCRBY", prefix, $0.value, 1) })
        }
    }

    struct Stuck: TopicHandler {
        func decode(_ message: KafkaMessage) throws -> String { message.valueString }

        func handle(_ batch: [Decoded<String>]) async throws {
            await withCheckedContinuation { (_: CheckedContinuation<Void, Never>) in }  // never resumed
        }
    }

    struct Numbers: FanOutSource {
        let count: Int
        let delay: Duration

        func count(for run: JobRunInfo) async throws -> Int? { count }

        func page(for run: JobRunInfo, after cursor: Int64, limit: Int) async throws -> [Int64] {
            try await Task.sleep(for: delay)
            let first = max(cursor + 1, 1)
            guard first <= Int64(count) else { return [] }
            return Array(first...min(first + Int64(limit) - 1, Int64(count)))
        }
    }

    struct BatchCounting: JobBatchHandler {
        let redis: any RedisClient
        let prefix: String
        var trap: Int64 = 0

        func work(_ batch: JobBatch) async throws -> BatchResult {
            if trap > 0, batch.ids.contains(trap) { fatalError("testkit: a batch holding id \(trap) traps") }
            _ = try await redis.pipeline(batch.ids.map { RedisCommand("HINCRBY", prefix, $0, 1) })
            return BatchResult(itemsDone: batch.ids.count)
        }
    }

    struct Stepping: TaskHandler {
        let redis: any RedisClient
        let prefix: String
        let steps: Int
        let delay: Duration

        func run(_ task: TaskExecution) async throws {
            var step = Int(task.record.cursor ?? "") ?? 0
            while step < steps {
                try await Task.sleep(for: delay)
                step += 1
                try await redis.send("HINCRBY", prefix, "step:\(step)", 1)
                try await task.checkpoint(cursor: String(step), done: Int64(step) * 10, total: Int64(steps) * 10)
            }
        }
    }
}
