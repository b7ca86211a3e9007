import Foundation
import Logging
import Postgres
import PrewarmConfiguration
import PrewarmRuntime
import Redis

/// What the page draws: the fleet's status (as `prewarmctl status --json`), the pods on the
/// board, each group's lag over the last half hour, the dead-letter topics, and what could not
/// be read (a source down shows as such, the rest still shows).
public struct ConsoleSnapshot: Sendable, Codable {
    public var at: Date
    public var status: FleetStatus?
    public var pods: [PodRecord]
    /// Group to its total lag, oldest first, one point per refresh.
    public var lagHistory: [String: [LagPoint]]
    /// Nil when Kafka is not configured or not read yet.
    public var deadLetters: [DeadLetterTopicSummary]?
    /// Source (`redis`, `postgres`, `kafka`) to the error that kept it from being read.
    public var problems: [String: String]
    /// Whether the actions need a token the console has (none set: they are off).
    public var actionsEnabled: Bool

    public struct LagPoint: Sendable, Codable, Equatable {
        public var at: Date
        public var lag: Int64
    }
}

/// Reads the fleet every `interval` (lag and dead letters from Kafka every `kafkaInterval`) and keeps the latest snapshot, so any number of open pages cost one reader.
public actor ConsoleSampler {
    let redis: any RedisClient
    let postgres: PostgresPool?
    let kafka: GroupOperations?
    let interval: Duration
    let kafkaInterval: Duration
    let history: Duration
    let actionsEnabled: Bool
    let logger: Logger
    private var latest: ConsoleSnapshot
    private var lagHistory: [String: [ConsoleSnapshot.LagPoint]] = [:]
    private var kafkaLag: [String: [String: Int64]]?
    private var deadLetters: [DeadLetterTopicSummary]?
    private var kafkaProblem: String?
    /// Refreshes overlap (the loop's and an action's): each is numbered when it starts, and one
    /// that ends after a later one has been applied is dropped, so the page never goes back.
    private var started = 0
    private var applied = 0

    public init(
        redis: any RedisClient, postgres: PostgresPool?, kafka: GroupOperations?, actionsEnabled: Bool,
        interval: Duration = .seconds(2), kafkaInterval: Duration = .seconds(5),
        history: Duration = .seconds(1800), logger: Logger
    ) {
        self.redis = redis
        self.postgres = postgres
        self.kafka = kafka
        self.interval = interval
        self.kafkaInterval = kafkaInterval
        self.history = history
        self.actionsEnabled = actionsEnabled
        self.logger = logger
        latest = ConsoleSnapshot(
            at: Date(), status: nil, pods: [], lagHistory: [:], deadLetters: nil, problems: [:],
            actionsEnabled: actionsEnabled)
    }

    public var snapshot: ConsoleSnapshot {
        var snapshot = latest
        if kafka != nil {
            snapshot.deadLetters = deadLetters
            if let kafkaProblem { snapshot.problems["kafka"] = kafkaProblem }
        }
        return snapshot
    }

    /// Refreshes until cancelled: Redis and PostgreSQL every `interval`, Kafka every
    /// `kafkaInterval` beside them (a slow broker never holds the tasks' progress back).
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                while !Task.isCancelled {
                    await self.refreshStores()
                    try? await Task.sleep(for: self.interval)
                }
            }
            if kafka != nil {
                group.addTask {
                    while !Task.isCancelled {
                        await self.refreshKafka()
                        try? await Task.sleep(for: self.kafkaInterval)
                    }
                }
            }
        }
    }

    /// Everything read again now.
    public func refresh() async {
        await refreshKafka()
        await refreshStores()
    }

    /// Lag and dead letters from Kafka.
    func refreshKafka() async {
        guard let kafka else { return }
        var problem: String?
        do {
            kafkaLag = try await kafka.catalogLag()
        } catch {
            kafkaLag = nil
            problem = "\(error)"
        }
        do {
            deadLetters = try await kafka.deadLetterSummary()
        } catch {
            problem = "\(error)"
        }
        kafkaProblem = problem
    }

    /// Runs, tasks, retries and alerts (Redis and PostgreSQL), the pods, and a point of each
    /// group's lag history; a source that fails is named in `problems` and the rest is read.
    public func refreshStores() async {
        started += 1
        let generation = started
        var next = latest
        next.at = Date()
        next.problems = [:]
        do {
            let since = Date().addingTimeInterval(-86_400)
            if let postgres {
                next.status = try await postgres.withConnection { [redis] connection in
                    try await FleetStatus.read(redis: redis, postgres: connection, runsSince: since, alerts: 20)
                }
            } else {
                next.status = try await FleetStatus.read(redis: redis, postgres: nil, runsSince: since, alerts: 20)
            }
        } catch {
            next.problems[postgres == nil ? "redis" : "redis or postgres"] = "\(error)"
        }
        do {
            next.pods = try await PodBoard.read(redis)
        } catch {
            next.problems["redis"] = "\(error)"
        }
        guard generation > applied else { return }  // a later refresh was applied meanwhile
        applied = generation
        if let kafkaLag {
            next.status?.lag = kafkaLag
            next.status?.lagSource = "kafka"
        }
        if let lag = next.status?.lag {
            let oldest = next.at.addingTimeInterval(-history.seconds)
            for (group, partitions) in lag {
                var points = lagHistory[group, default: []].filter { $0.at >= oldest }
                points.append(.init(at: next.at, lag: partitions.values.reduce(0, +)))
                lagHistory[group] = points
            }
        }
        next.lagHistory = lagHistory
        latest = next
    }
}
