import Foundation
import Logging
import Postgres
import PrewarmRuntime

/// Turns reservations into pre-warm tasks: the one path behind the consumer, the HTTP
/// trigger and `prewarmctl ka prewarm`.
///
/// - An unknown shop is refused (the consumer dead-letters it, the trigger answers 404).
/// - A shop with fewer users than `minUsers` is skipped: only key accounts are pre-warmed.
/// - A live whose task is queued, running or succeeded, or whose success flag is set, is a
///   duplicate: skipped and alerted, unless forced. Forcing a finished live clears its flag
///   and its old retry rows and queues it again from the start; a live still queued or
///   running cannot be forced (its runner holds the lease).
/// - A task that cannot finish before its stream starts, at the rate the last pre-warms
///   measured, alerts when it is queued.
public struct KAPrewarmQueue: Sendable {
    public let tasks: TaskQueue
    public let source: KASource
    public let cache: KACache
    public let retries: RetryTable
    public let alerts: Alerts?
    public let options: KAOptions
    public let logger: Logger

    public init(
        tasks: TaskQueue, source: KASource, cache: KACache, retries: RetryTable, alerts: Alerts?, options: KAOptions,
        logger: Logger
    ) {
        self.tasks = tasks
        self.source = source
        self.cache = cache
        self.retries = retries
        self.alerts = alerts
        self.options = options
        self.logger = logger
    }

    /// Tries before a pre-warm fails for good (a lease held by a stalled runner, outages).
    public static let maxAttempts = 12

    public enum Outcome: Sendable, Equatable {
        /// A new task, or a finished one queued again.
        case queued(TaskRecord)
        /// Already pre-warming or pre-warmed: nothing changed.
        case duplicate(TaskRecord?, reason: String)
        /// Not a key account (too few users).
        case skipped(users: Int64)
        /// No such shop.
        case unknownShop

        public var name: String {
            switch self {
            case .queued: "queued"
            case .duplicate: "duplicate"
            case .skipped: "skipped"
            case .unknownShop: "unknown-shop"
            }
        }
    }

    /// The shops of `reservations`: which exist, and their users (one database read).
    public func shops(of reservations: [Reservation]) async throws -> (existing: Set<Int64>, users: [Int64: Int64]) {
        try await source.userCounts(Array(Set(reservations.map(\.shopID))))
    }

    /// Queues each reservation's pre-warm (one database read for all their shops, unless the
    /// caller read them already). `sources` name the messages they came in
    /// (`topic[partition]@offset`): a message delivered again (a replay, a crash before its
    /// offset was committed) finds the task it queued and is skipped without the duplicate
    /// alert, which is for a second reservation of a live.
    public func enqueue(
        _ reservations: [Reservation], shops: (existing: Set<Int64>, users: [Int64: Int64])? = nil,
        sources: [String]? = nil
    ) async throws -> [Outcome] {
        var counts = shops
        if counts == nil { counts = try await self.shops(of: reservations) }
        guard let counts else { return [] }
        var outcomes: [Outcome] = []
        for (index, reservation) in reservations.enumerated() {
            guard counts.existing.contains(reservation.shopID) else {
                outcomes.append(.unknownShop)
                continue
            }
            outcomes.append(
                try await enqueue(
                    reservation, users: counts.users[reservation.shopID] ?? 0, source: sources?[index]))
        }
        return outcomes
    }

    /// Queues one reservation asked for by a person (the HTTP trigger, `prewarmctl ka
    /// prewarm`): a duplicate is answered to them (409, exit 4), not alerted.
    public func enqueue(_ reservation: Reservation) async throws -> Outcome {
        let counts = try await shops(of: [reservation])
        guard counts.existing.contains(reservation.shopID) else { return .unknownShop }
        return try await enqueue(
            reservation, users: counts.users[reservation.shopID] ?? 0, source: nil, alertDuplicates: false)
    }

    private func enqueue(_ reservation: Reservation, users: Int64, source: String?, alertDuplicates: Bool = true)
        async throws -> Outcome
    {
        let live = reservation.liveID
        let metadata: Logger.Metadata = [
            "live": "\(live)", "shop": "\(reservation.shopID)", "reservation": "\(reservation.reservationID)",
        ]
        guard users >= options.minUsers else {
            logger.info(
                "reservation skipped: not a key account",
                metadata: metadata.merging(["users": "\(users)", "min": "\(options.minUsers)"]) { $1 })
            return .skipped(users: users)
        }
        let key = String(live)
        let payload = KATaskPayload(reservation: reservation, users: users, source: source)
        if reservation.force {
            let existing = try await tasks.task(kind: KAPrewarmTask.kind, key: key)
            if let existing, existing.state.isActive {
                return duplicate(
                    existing, "a pre-warm of live \(live) is \(existing.state); force applies to a finished one",
                    reservation, source: source, alert: false)
            }
            if let existing, Self.queued(existing, by: source) {
                // The forcing message itself, delivered again: its pre-warm ran; not a third time.
                return duplicate(
                    existing, "the pre-warm this message forced is \(existing.state)", reservation, source: source,
                    alert: alertDuplicates)
            }
            try await cache.redis.send("DEL", cache.doneKey(live: live), cache.riskKey(live: live))
            if let existing { try await retries.remove(taskID: existing.id) }
        } else if try await RedisFlags(redis: cache.redis).isSet(cache.doneKey(live: live)) {
            let existing = try await tasks.task(kind: KAPrewarmTask.kind, key: key)
            return duplicate(
                existing, "live \(live) is already pre-warmed (its success flag is set)", reservation, source: source,
                alert: alertDuplicates)
        }
        let enqueued = try await tasks.enqueue(
            kind: KAPrewarmTask.kind, key: key, payload: payload, deadline: reservation.startsAt, total: users,
            maxAttempts: Self.maxAttempts, force: reservation.force)
        switch enqueued {
        case .duplicate(let record):
            return duplicate(
                record, "a pre-warm of live \(live) is already \(record.state)", reservation, source: source,
                alert: alertDuplicates)
        case .created(let record), .requeued(let record):
            logger.notice(
                "pre-warm queued",
                metadata: metadata.merging([
                    "users": "\(users)", "starts_at": "\(RFC3339.display(reservation.startsAt))",
                    "forced": "\(reservation.force)",
                ]) { $1 })
            try await warnIfUnlikelyInTime(reservation, users: users)
            return .queued(record)
        }
    }

    /// A live's pre-warm as the trigger and `prewarmctl ka show` report it; nil if none.
    public func status(live: Int64) async throws -> KATaskStatus? {
        guard let record = try await tasks.task(kind: KAPrewarmTask.kind, key: String(live)) else { return nil }
        return KATaskStatus(record, retries: try await retries.count(taskID: record.id))
    }

    /// Whether `record` was queued by the message `source` (the same message delivered again).
    private static func queued(_ record: TaskRecord?, by source: String?) -> Bool {
        guard let source, let record else { return false }
        return (try? record.decodePayload(KATaskPayload.self).source) == source
    }

    private func duplicate(
        _ record: TaskRecord?, _ reason: String, _ reservation: Reservation, source: String?, alert: Bool = true
    ) -> Outcome {
        if Self.queued(record, by: source) {
            logger.info(
                "reservation delivered again (a replay): its pre-warm is already queued",
                metadata: ["live": "\(reservation.liveID)", "message": "\(source ?? "")", "reason": "\(reason)"])
            return .duplicate(record, reason: reason)
        }
        if alert {
            alerts?.raise(
                "ka-duplicate-reservation", "reservation \(reservation.reservationID) skipped: \(reason)",
                details: [
                    "live": String(reservation.liveID), "shop": String(reservation.shopID),
                    "reservation": reservation.reservationID,
                ])
        }
        return .duplicate(record, reason: reason)
    }

    /// Alerts at once if, at the per-writer rate the last pre-warms measured and with every
    /// writer allowed, the task would end after its stream starts.
    private func warnIfUnlikelyInTime(_ reservation: Reservation, users: Int64) async throws {
        guard let perWriter = try await cache.lastRate() else { return }
        let seconds = Double(users) / max(perWriter * Double(options.maxWriters), 0.001)
        let finish = Date().addingTimeInterval(seconds)
        guard finish > reservation.startsAt else { return }
        try await raiseDeadlineRisk(
            reservation, finish: finish,
            "at the \(Int(perWriter)) users/s per writer the last pre-warms measured, \(users) users take about "
                + "\(Int(seconds)) s")
    }

    /// The deadline-risk alert, once per live.
    func raiseDeadlineRisk(_ reservation: Reservation, finish: Date, _ why: String) async throws {
        try await KADeadlineRisk(cache: cache, alerts: alerts).raise(reservation, finish: finish, why)
    }
}

/// The deadline-risk alert: raised once per live (a flag in Redis until the stream ends),
/// whichever pod or path sees the risk first.
struct KADeadlineRisk {
    let cache: KACache
    let alerts: Alerts?

    func raise(_ reservation: Reservation, finish: Date, _ why: String) async throws {
        let key = cache.riskKey(live: reservation.liveID)
        let until = Int(reservation.endsAt.timeIntervalSince1970.rounded(.up))
        guard try await cache.redis.send("SET", key, "1", "NX", "EXAT", until) == .status("OK") else { return }
        alerts?.raise(
            "ka-deadline-risk",
            "live \(reservation.liveID) of shop \(reservation.shopID) will not be pre-warmed before its stream "
                + "starts at \(RFC3339.display(reservation.startsAt)): \(why); expected to end about "
                + RFC3339.display(finish),
            details: [
                "live": String(reservation.liveID), "shop": String(reservation.shopID),
                "starts_at": RFC3339.display(reservation.startsAt), "expected_end": RFC3339.display(finish),
            ])
    }
}
