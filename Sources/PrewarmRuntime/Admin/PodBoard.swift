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

/// Pods announce themselves in Redis: `prewarm:pod:{<worker>}:<owner>` holds the pod's
/// `PodRecord` as JSON, written every `every` with an expiry of three times that, so a pod
/// that dies without a word leaves the board within `3 * every`, and one that stops cleanly
/// removes its entry. A Redis outage only delays the next write.
public struct PodBoard: Sendable {
    public static let prefix = "prewarm:pod:"
    public let redis: any RedisClient
    public let every: Duration

    public init(redis: any RedisClient, every: Duration = .seconds(5)) {
        self.redis = redis
        self.every = every
    }

    static func key(worker: String, owner: String) -> String { prefix + "{\(worker)}:\(owner)" }

    public func publish(_ record: PodRecord) async throws {
        let ttl = max(3, Int((every * 3).seconds.rounded(.up)))
        _ = try await redis.send(
            "SET", Self.key(worker: record.worker, owner: record.owner),
            String(decoding: try JSONEncoder.prewarm.encode(record), as: UTF8.self), "EX", ttl)
    }

    public func remove(worker: String, owner: String) async throws {
        _ = try await redis.send("DEL", Self.key(worker: worker, owner: owner))
    }

    /// Every pod on the board, by worker then owner.
    public static func read(_ redis: any RedisClient) async throws -> [PodRecord] {
        let keys = Array(Set(try await redis.keys(matching: prefix + "*", count: 200))).sorted()
        guard !keys.isEmpty else { return [] }
        return try await redis.mget(keys).compactMap { value in
            value.flatMap { try? JSONDecoder.prewarm.decode(PodRecord.self, from: Data($0)) }
        }.sorted { ($0.worker, $0.owner) < ($1.worker, $1.owner) }
    }
}

/// The service that keeps a worker's entry on the board: every `board.every`, its readiness
/// (the same checks as `/readyz`) and where its admin HTTP listens. The readiness is also the
/// gauge `prewarm_ready` (1 ready, 0 not), for an alert rule that sees a pod not ready.
final class PodHeartbeat: Service {
    let board: PodBoard
    let record: @Sendable () async -> PodRecord?
    let logger: Logger
    let ready: Gauge

    /// `record` nil: not announced yet (the admin server has no port yet).
    init(
        board: PodBoard, logger: Logger, metricsFactory: any MetricsFactory,
        record: @escaping @Sendable () async -> PodRecord?
    ) {
        self.board = board
        self.record = record
        self.logger = logger
        self.ready = Gauge(label: "prewarm_ready", dimensions: [], factory: metricsFactory)
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
