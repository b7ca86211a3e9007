import Foundation
import Logging
import Postgres
import PrewarmRuntime
import Redis
import ServiceLifecycle

/// Rebuilds the activity in Redis from the log in PostgreSQL, which is its record: Redis is a
/// cache, and a failover or a restart without persistence loses day sets the store-scorer's
/// active users come from. For each day of the window whose day set has another number of
/// users than the log has that day, the log's users of the day are put back where the set lacks
/// them (`ActivityWriter.restore`), their month counts made the number of the month's day sets
/// that have them (a count never lowered): running it again changes nothing.
public struct ActivityReconciler: Sendable {
    /// Its nightly job: every day set of the window checked against the log.
    public static let jobName = "activity-reconcile"

    public let pool: PostgresPool
    public let writer: ActivityWriter
    /// Days before today (and today) that are checked: the store-scorer's window.
    public let days: Int
    let logger: Logger

    public init(pool: PostgresPool, writer: ActivityWriter, days: Int = 30, logger: Logger) {
        self.pool = pool
        self.writer = writer
        self.days = days
        self.logger = logger
    }

    /// Day sets checked and rebuilt, and the (user, day) pairs they gained.
    public struct Report: Sendable, Equatable {
        public var checked = 0
        public var rebuilt: [String] = []
        public var restored = 0
    }

    public func run(now: Date = Date()) async throws -> Report {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = writer.timeZone
        let since = calendar.startOfDay(for: calendar.date(byAdding: .day, value: -(days - 1), to: now)!)
        let logged = try await pool.withConnection { connection in
            try await connection.query(
                """
                SELECT to_char(entered_at AT TIME ZONE $1, 'YYYYMMDD'), count(DISTINCT user_id)
                FROM (\(EntryIngestSchema.allShards("user_id, entered_at"))) s
                WHERE entered_at >= $2 GROUP BY 1 ORDER BY 1
                """, [writer.timeZone.identifier, since])
        }.rows.compactMap { row -> (day: String, users: Int)? in
            guard let day = row[0].string, let users = row[1].int else { return nil }
            return (day, users)
        }
        var report = Report(checked: logged.count)
        guard !logged.isEmpty else { return report }
        let cached = try await writer.redis.pipeline(logged.map { RedisCommand("SCARD", writer.dayKey($0.day)) })
        for ((day, users), reply) in zip(logged, cached) where Int(reply.integer ?? 0) != users {
            report.rebuilt.append(day)
            report.restored += try await rebuild(day)
        }
        if !report.rebuilt.isEmpty {
            logger.notice(
                "activity rebuilt from the log",
                metadata: ["days": "\(report.rebuilt)", "user_days_restored": "\(report.restored)"])
        }
        return report
    }

    /// The log's users of `day` put back where its day set lacks them (`ActivityWriter.restore`),
    /// 5,000 at a time.
    private func rebuild(_ day: String) async throws -> Int {
        guard let (start, end, _, _) = writer.bounds(of: day) else { return 0 }
        let users = try await pool.withConnection { connection in
            try await connection.query(
                """
                SELECT DISTINCT user_id FROM (\(EntryIngestSchema.allShards("user_id, entered_at"))) s
                WHERE entered_at >= $1 AND entered_at < $2
                """, [start, end])
        }.rows.compactMap { $0[0].int64 }
        var restored = 0
        for chunk in stride(from: 0, to: users.count, by: 5000) {
            restored += try await writer.restore(day: day, users: Array(users[chunk..<min(chunk + 5000, users.count)]))
        }
        return restored
    }
}

/// Watches for Redis losing what entry-ingest wrote to it (a failover without persistence,
/// a flush): a marker key, `{act}:epoch`, that only a completed rebuild sets (the first pod
/// of a fleet on an empty Redis makes one, reading the window's log). It lives in the day
/// sets' slot, so on a cluster it goes with them whatever happens to their primary.
/// Every `checkEvery` each pod looks for it; the pod that finds it missing and takes the
/// rebuild's lease rebuilds the window's activity from the log, alerts when it restored
/// anything, and sets the marker. (A nightly `activity-reconcile` run catches a partial loss,
/// which leaves the marker in place.)
public struct ActivityGuard: Service {
    public static let epochKey = "{act}:epoch"
    static let leaseKey = "prewarm:activity:rebuild"

    public let reconciler: ActivityReconciler
    public let checkEvery: Duration
    let alerts: Alerts?
    let owner: String

    public init(reconciler: ActivityReconciler, checkEvery: Duration, alerts: Alerts?, owner: String) {
        self.reconciler = reconciler
        self.checkEvery = checkEvery
        self.alerts = alerts
        self.owner = owner
    }

    public func run() async throws {
        await repeatEvery(checkEvery, "activity check", logger: reconciler.logger) { try await check() }
    }

    /// The marker (after the writer's key prefix).
    var epoch: String { reconciler.writer.keyPrefix + Self.epochKey }

    /// One look: rebuilds when the marker is missing (under the rebuild's lease, one pod at a
    /// time). Returns whether the marker is there now (false: another pod is rebuilding).
    @discardableResult
    public func check() async throws -> Bool {
        let redis = reconciler.writer.redis
        let epoch = epoch
        guard try await redis.send("EXISTS", epoch) == .integer(0) else { return true }
        guard
            let lease = try await RedisLease.acquire(
                reconciler.writer.keyPrefix + Self.leaseKey, ttl: .seconds(60), on: redis, owner: owner)
        else { return false }
        try await lease.holding(logger: reconciler.logger) {
            guard try await redis.send("EXISTS", epoch) == .integer(0) else { return }
            let report = try await reconciler.run()
            if report.restored > 0 {
                alerts?.raise(
                    "activity-rebuilt",
                    "Redis had lost activity: \(report.restored) user-days of \(report.rebuilt.count) days rebuilt "
                        + "from the log",
                    details: ["days": String(report.rebuilt.count), "restored": String(report.restored)])
            }
            try await redis.send("SET", epoch, ISO8601DateFormatter().string(from: Date()))
        }
        return true
    }

    /// Returns once the activity is whole: rebuilt here, or by the pod rebuilding it now
    /// (waited for up to `timeout`). What a reader of the activity (the store-scorer's
    /// snapshot) calls first, so that it never counts users from day sets Redis lost.
    public func ensureWhole(timeout: Duration = .seconds(600)) async throws {
        let deadline = ContinuousClock.now + timeout
        while try await !check() {
            guard ContinuousClock.now < deadline else {
                throw TimedOut("the activity's rebuild by another pod", after: timeout)
            }
            try await Task.sleep(for: .milliseconds(500))
        }
    }

    /// Marks the activity whole without a rebuild: for a writer that wrote the day sets and
    /// the log together (a benchmark's data).
    public static func markWhole(_ redis: any RedisClient, prefix: String = "") async throws {
        try await redis.send("SET", prefix + epochKey, ISO8601DateFormatter().string(from: Date()))
    }
}
