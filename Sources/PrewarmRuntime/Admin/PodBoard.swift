import CoreMetrics
import Foundation
import Logging
import Redis
import ServiceLifecycle

/// One live pod as it last said: what it is, where its admin HTTP answers, whether it was
/// ready. Written by the pod itself (`PodBoard`), read by `prewarmctl console` and `status`.
public struct PodRecord: Sendable, Codable, Equatable {
    public var worker: String
    public var owner: String
    /// `host:port` of its admin HTTP, as other machines reach it (`PREWARM_ADMIN_ADVERTISE_HOST`).
    public var admin: String
    public var group: String?
    /// The scheduled jobs it can run (the console triggers a job through one of these pods).
    public var jobs: [String]
    public var ready: Bool
    /// Why it is not ready, or notes (e.g. no partition assigned).
    public var problems: [String]
    public var startedAt: Date
    public var seenAt: Date

    public init(
        worker: String, owner: String, admin: String, group: String?, jobs: [String], ready: Bool,
        problems: [String], startedAt: Date, seenAt: Date
    ) {
        self.worker = worker
        self.owner = owner
        self.admin = admin
        self.group = group
        self.jobs = jobs
        self.ready = ready
        self.problems = problems
        self.startedAt = startedAt
        self.seenAt = seenAt
    }
}

/// Pods announce themselves in Redis, in one hash, `prewarm:pods` (field `<worker>|<owner>`,
/// value the pod's `PodRecord` as JSON), written every `every`: a reader (the console, every
/// two seconds) reads the one key instead of scanning a keyspace that holds a million users'
/// keys. An entry not written for `3 * every` is a pod that died without a word: readers skip
/// it and remove it. A pod that stops cleanly removes its own. A Redis outage only delays the
/// next write.
public struct PodBoard: Sendable {
    public static let key = "prewarm:pods"
    public let redis: any RedisClient
    public let every: Duration

    public init(redis: any RedisClient, every: Duration = .seconds(5)) {
        self.redis = redis
        self.every = every
    }

    static func field(worker: String, owner: String) -> String { "\(worker)|\(owner)" }

    public func publish(_ record: PodRecord) async throws {
        _ = try await redis.send(
            "HSET", Self.key, Self.field(worker: record.worker, owner: record.owner),
            String(decoding: try JSONEncoder.prewarm.encode(record), as: UTF8.self))
    }

    public func remove(worker: String, owner: String) async throws {
        _ = try await redis.send("HDEL", Self.key, Self.field(worker: worker, owner: owner))
    }

    /// The live pods, by worker then owner; entries older than `staleAfter` (three of the pods'
    /// 5 s beats) are left out and removed.
    public static func read(_ redis: any RedisClient, staleAfter: Duration = .seconds(15)) async throws -> [PodRecord] {
        let oldest = Date().addingTimeInterval(-staleAfter.seconds)
        return try await RedisBoard.live(redis, key: key) { _, value in
            (try? JSONDecoder.prewarm.decode(PodRecord.self, from: Data(value))).flatMap {
                $0.seenAt >= oldest ? $0 : nil
            }
        }.sorted { ($0.worker, $0.owner) < ($1.worker, $1.owner) }
    }
}

/// The service that keeps a worker's entry on the board: every `board.every`, its readiness
/// (the same checks as `/readyz`) and where its admin HTTP listens. The readiness is also the
/// gauge `prewarm_ready{worker}` (1 ready, 0 not), for the rules that see a pod not ready and
/// a worker with no pod left.
final class PodHeartbeat: Service {
    let board: PodBoard
    let record: @Sendable () async -> PodRecord?
    let logger: Logger
    let ready: Gauge

    /// `record` nil: not announced yet (the admin server has no port yet).
    init(
        board: PodBoard, worker: String, logger: Logger, metricsFactory: any MetricsFactory,
        record: @escaping @Sendable () async -> PodRecord?
    ) {
        self.board = board
        self.record = record
        self.logger = logger
        self.ready = Gauge(label: "prewarm_ready", dimensions: [("worker", worker)], factory: metricsFactory)
    }

    func run() async throws {
        var last: PodRecord?
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            if let record = await record() {
                last = record
                ready.record(record.ready ? 1 : 0)
                do {
                    try await board.publish(record)
                } catch {
                    logger.debug("pod board not written", metadata: ["error": "\(error)"])
                }
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: self.board.every) }
        }
        if let last { try? await board.remove(worker: last.worker, owner: last.owner) }
    }
}
