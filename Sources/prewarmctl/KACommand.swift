import ArgumentParser
import CoreMetrics
import Foundation
import KAPrewarm
import Logging
import Postgres
import PrewarmConfiguration
import PrewarmRuntime
import Redis

/// `prewarmctl ka ...`: the manual side of ka-prewarmer, through the same code as a
/// reservation message (PostgreSQL and Redis only; a running ka-prewarmer pod works the task).
struct KACommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ka",
        abstract: "Key-account pre-warms: queue one, retry a failed one, show one.",
        subcommands: [KAPrewarmCommand.self, KARetryCommand.self, KAShowCommand.self])
}

/// Redis, PostgreSQL and the alert path for one command, closed after it.
private struct KAConnections {
    let redis: any RedisClient & Closable
    let postgres: PostgresPool
    let alerts: Alerts
    let queue: KAPrewarmQueue

    static func open(_ name: String) async throws -> KAConnections {
        let reader = EnvironmentReader(ProcessInfo.processInfo.environment)
        let options = try KAOptions(reader)
        let logger = Logger(label: "prewarmctl")
        let redis = try await reader.connectRedis(clientName: name)
        let postgres: PostgresConnection
        do {
            postgres = try await PostgresConnection.connect(try reader.postgres(applicationName: name))
        } catch {
            await redis.close()
            throw error
        }
        let pool = PostgresPool(postgres)
        let alerts = Alerts(
            worker: "prewarmctl", logger: logger, metricsFactory: NOOPMetricsHandler.instance, redis: redis)
        let queue = KAPrewarmQueue(
            tasks: TaskQueue(pool: pool, settings: TaskSettings()), source: KASource(pool: pool),
            cache: KACache(redis: redis), retries: RetryTable(pool: pool), alerts: alerts, options: options,
            logger: logger)
        return KAConnections(redis: redis, postgres: pool, alerts: alerts, queue: queue)
    }

    func close() async {
        await alerts.close()
        await postgres.close()
        await redis.close()
    }

    func run<T>(_ body: (KAConnections) async throws -> T) async throws -> T {
        do {
            let value = try await body(self)
            await close()
            return value
        } catch {
            await close()
            throw error
        }
    }
}

private func printJSON(_ value: some Encodable) throws {
    print(String(decoding: try JSONEncoder.prewarm.encode(value), as: UTF8.self))
}

struct KAPrewarmCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prewarm",
        abstract: "Queue a live's pre-warm, as a reservation on live.reservation.v1 would.",
        discussion: """
            Times are RFC 3339 (2026-12-01T20:00:00+08:00). Exits 0 when queued, 3 when skipped (not a key \
            account), 4 when a pre-warm of the live is already queued, running or done (use --force to warm a \
            finished one again), 65 for an unknown shop or an invalid reservation.
            """)

    @Option(help: "The shop's id.") var shop: Int64
    @Option(help: "The live stream's id (one pre-warm per live).") var live: Int64
    @Option(help: "When the stream starts (RFC 3339): the pre-warm's deadline.") var startsAt: String
    @Option(help: "When the stream ends (RFC 3339): the keys expire 30 to 40 minutes later.") var endsAt: String
    @Option(help: "The reservation's id (default: manual-<live>-<time>).") var reservation: String?
    @Flag(help: "Warm again a live whose pre-warm already ran or succeeded.") var force = false

    func run() async throws {
        guard let starts = RFC3339.parse(startsAt) else {
            throw ValidationError("--starts-at '\(startsAt)' is not an RFC 3339 time")
        }
        guard let ends = RFC3339.parse(endsAt) else {
            throw ValidationError("--ends-at '\(endsAt)' is not an RFC 3339 time")
        }
        let request = Reservation(
            reservationID: reservation ?? "manual-\(live)-\(Int(Date().timeIntervalSince1970))", liveID: live,
            shopID: shop, startsAt: starts, endsAt: ends, force: force)
        do {
            try request.validate()
        } catch let invalid as InvalidMessage {
            throw ValidationError(invalid.reason)
        }
        let outcome = try await KAConnections.open("prewarmctl-ka").run { try await $0.queue.enqueue(request) }
        switch outcome {
        case .queued(let task):
            print(
                "queued: live \(live) of shop \(shop), \(task.total ?? 0) users, deadline \(startsAt) (task \(task.id))"
            )
        case .duplicate(let task, let reason):
            print("duplicate: \(reason)\(task.map { " (task \($0.id), \($0.done)/\($0.total ?? 0))" } ?? "")")
            throw ExitCode(4)
        case .skipped(let users):
            print("skipped: shop \(shop) has \(users) users, fewer than PREWARM_KA_MIN_USERS")
            throw ExitCode(3)
        case .unknownShop:
            FileHandle.standardError.write(Data("prewarmctl: shop \(shop) is not a known shop\n".utf8))
            throw ExitCode(65)
        }
    }
}

struct KARetryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retry",
        abstract: "Queue a failed or cancelled pre-warm again from its checkpoint, its exhausted batches revived.")

    @Option(help: "The live stream's id.") var live: Int64

    func run() async throws {
        let retried = try await KAConnections.open("prewarmctl-ka").run { connections in
            try await connections.queue.tasks.retry(
                kind: KAPrewarmTask.kind, key: String(live), reviving: connections.queue.retries)
        }
        guard let (task, revived) = retried else {
            FileHandle.standardError.write(
                Data("prewarmctl: live \(live) has no failed or cancelled pre-warm to retry\n".utf8))
            throw ExitCode(4)
        }
        print(
            "queued again from its checkpoint: live \(live), \(task.done)/\(task.total ?? 0) users done, "
                + "\(revived) exhausted batches revived")
    }
}

struct KAShowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show", abstract: "A live's pre-warm: state, progress, ETA, errors (JSON).")

    @Option(help: "The live stream's id.") var live: Int64

    func run() async throws {
        let status = try await KAConnections.open("prewarmctl-ka").run { try await $0.queue.status(live: live) }
        guard let status else {
            FileHandle.standardError.write(Data("prewarmctl: no pre-warm task for live \(live)\n".utf8))
            throw ExitCode(4)
        }
        try printJSON(status)
    }
}
