import CoreMetrics
import Foundation
import Logging
import Postgres
import PrewarmRuntime
import Redis
import Synchronization

/// What a pre-warm task carries: the reservation, the shop's users when it was queued, and
/// the message it came in (`topic[partition]@offset`; nil when queued over HTTP).
public struct KATaskPayload: Sendable, Codable, Equatable {
    public var reservation: Reservation
    public var users: Int64
    public var source: String?
}

/// A batch that could not be written, waiting in the retry table: the shop's users in
/// (`after`, `through`] (`KAUserPosition`s: the users' ids and their sub-shards), and the
/// stream's end (their keys' expiry). A row without the sub-shards (written by a version that
/// read users by id alone) names the users with ids in (`after`, `through`].
public struct KARetryItem: Sendable, Codable, Equatable {
    public var shopID: Int64
    public var liveID: Int64
    public var after: Int64
    public var through: Int64
    public var afterSubShard: Int64?
    public var throughSubShard: Int64?
    public var endsAt: Date

    public init(shopID: Int64, liveID: Int64, after: KAUserPosition, through: KAUserPosition, endsAt: Date) {
        self.shopID = shopID
        self.liveID = liveID
        self.after = after.user
        self.through = through.user
        self.afterSubShard = after.subShard
        self.throughSubShard = through.subShard
        self.endsAt = endsAt
    }

    /// The batch's range, when the row has it by sub-shard.
    public var range: (after: KAUserPosition, through: KAUserPosition)? {
        guard let afterSubShard, let throughSubShard else { return nil }
        return (
            KAUserPosition(subShard: afterSubShard, user: after),
            KAUserPosition(subShard: throughSubShard, user: through)
        )
    }
}

/// Runs one live's pre-warm as a durable task: under the live's lease (fenced writes), the
/// shop's own keys in one write, then its users by keyset in batches, each one fenced write,
/// the checkpoint advanced after each; failed batches to the retry table; the task succeeds
/// when its retry rows are drained and a sample of its keys reads back, and only then sets
/// the success flag.
public final class KAPrewarmTask: TaskHandler {
    public static let kind = "ka-prewarm"

    let options: KAOptions
    let cache: KACache
    let source: KASource
    let retries: RetryTable
    let alerts: Alerts
    let owner: String
    let logger: Logger
    let limiter: RowRateLimiter
    let leaseMetrics: LeaseMetrics?
    private let written: Counter
    private let deadlines: KADeadlineGauges
    private let metricsFactory: any MetricsFactory
    /// The stages a pre-warm's batch loop waits on: the next batch's read, a free writer (or
    /// the last checkpoint's save, at the end).
    static let stages = ["read", "write"]
    /// Batches read by one query, and reads queued ahead of the writers.
    static let readBatches = 4
    static let readsAhead = 2

    public init(
        options: KAOptions, cache: KACache, source: KASource, retries: RetryTable, alerts: Alerts, owner: String,
        logger: Logger, metricsFactory: any MetricsFactory, leaseMetrics: LeaseMetrics? = nil
    ) {
        self.options = options
        self.cache = cache
        self.source = source
        self.retries = retries
        self.alerts = alerts
        self.owner = owner
        self.logger = logger
        self.limiter = RowRateLimiter(rowsPerSecond: options.maxDatabaseRowsPerSecond)
        self.leaseMetrics = leaseMetrics
        self.written = Counter(label: "prewarm_ka_keys_written_total", dimensions: [], factory: metricsFactory)
        self.deadlines = KADeadlineGauges(factory: metricsFactory)
        self.metricsFactory = metricsFactory
    }

    public func run(_ task: TaskExecution) async throws {
        let payload = try task.record.decodePayload(KATaskPayload.self)
        let live = payload.reservation.liveID
        let lease = try await acquireLease(payload.reservation)
        do {
            try await lease.holding(logger: logger, metrics: leaseMetrics) {
                try await self.prewarm(task, payload, lease: lease)
            }
        } catch let lost as LeaseLost {
            alerts.raise(
                "ka-lease-lost", "the pre-warm of live \(live) lost its lease here: \(lost.reason)",
                details: ["live": String(live), "shop": String(payload.reservation.shopID)])
            throw lost
        }
    }

    /// The live's lease. The task is ours in the table, so a holder is a runner that stopped
    /// beating (dead, or stalled past its heartbeat): its lease lapses within one TTL unless it
    /// wakes and renews it, so wait that long before giving the attempt up.
    private func acquireLease(_ reservation: Reservation) async throws -> RedisLease {
        let live = reservation.liveID
        let key = cache.leaseKey(live: live)
        // The fence outlives any holder: until an hour after the stream, or two leases from now.
        let fence = (
            key: cache.fenceKey(live: live),
            expiresAt: max(
                reservation.endsAt.addingTimeInterval(3600), Date().addingTimeInterval(2 * options.lease.seconds))
        )
        let deadline = ContinuousClock.now + options.lease + .milliseconds(500)
        var waited = false
        while true {
            if let lease = try await RedisLease.acquire(
                key, ttl: options.lease, on: cache.redis, owner: owner, fence: fence)
            {
                return lease
            }
            guard ContinuousClock.now < deadline else { throw LeaseBusy(key: key) }
            if !waited {
                let holder = try await cache.redis.send("GET", key).string ?? "?"
                logger.notice(
                    "waiting for the lease of the runner that stopped beating",
                    metadata: ["live": "\(live)", "holder": "\(holder)"])
                waited = true
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    /// A key's expiry: the stream's end, plus 30 min, plus up to 10 min at random.
    func expiry(_ reservation: Reservation) -> Int64 {
        let base = reservation.endsAt.timeIntervalSince1970 * 1000 + Double(options.ttlAfterEnd.milliseconds)
        return Int64(base) + Int64.random(in: 0...Int64(options.ttlJitter.milliseconds))
    }

    private func prewarm(_ task: TaskExecution, _ payload: KATaskPayload, lease: RedisLease) async throws {
        let reservation = payload.reservation
        let shop = reservation.shopID
        guard let values = try await source.shop(shop) else {
            throw PrewarmFailed(reason: "shop \(shop) no longer exists")
        }
        var entries = KACache.Entries()
        entries.append(key: cache.shopKey(shop), value: values.shop, expiry: expiry(reservation))
        entries.append(key: cache.staffKey(shop), value: values.staff, expiry: expiry(reservation))
        entries.append(key: cache.productsKey(shop), value: values.products, expiry: expiry(reservation))
        entries.append(key: cache.marketingKey(shop), value: values.marketing, expiry: expiry(reservation))
        // Copies of the fence (on a cluster) last as long as the lease's generation count can.
        let fence = cache.fence(lease, live: reservation.liveID, until: reservation.endsAt.addingTimeInterval(3600))
        guard case .written = try await cache.write(entries, fence: fence) else {
            throw lease.refused("Redis refused the write: another runner holds the lease")
        }
        var resumed = KAUserPosition(cursor: task.record.cursor) ?? .start
        var done = task.record.done
        if resumed > .start {
            logger.notice(
                "pre-warm resuming from its checkpoint",
                metadata: ["live": "\(reservation.liveID)", "cursor": "\(resumed)", "done": "\(done)"])
        } else if let cursor = task.record.cursor, cursor != KAUserPosition.start.description, cursor != "0" {
            logger.notice(
                "pre-warm checkpoint of an older key layout: warming from the start",
                metadata: ["live": "\(reservation.liveID)", "cursor": "\(cursor)"])
            done = 0
        }
        var sample = try await writeUsers(task, payload, fence: fence, from: resumed, done: done)
        try await waitForRetries(task, payload)
        for round in 1...2 {
            let missing = try await verify(payload, written: sample, resumedAfter: resumed)
            if missing == 0 { break }
            alerts.raise(
                "ka-verification-failed",
                "live \(reservation.liveID): \(missing) sampled keys of shop \(shop) were missing after the pre-warm"
                    + (round == 1 ? "; warming it again" : "; giving up"),
                details: ["live": String(reservation.liveID), "shop": String(shop)])
            guard round == 1 else {
                throw PrewarmFailed(reason: "\(missing) sampled keys still missing after warming again")
            }
            try await task.checkpoint(cursor: KAUserPosition.start.description, done: 0, total: payload.users)
            sample = try await writeUsers(task, payload, fence: fence, from: .start, done: 0)
            resumed = .start
            try await waitForRetries(task, payload)
        }
        try lease.ensureHeld()
        try await RedisFlags(redis: cache.redis).setSuccess(
            cache.doneKey(live: reservation.liveID), until: reservation.endsAt)
        logger.notice(
            "pre-warm succeeded",
            metadata: ["live": "\(reservation.liveID)", "shop": "\(shop)", "users": "\(payload.users)"])
    }

    private enum BatchOutcome: Sendable {
        case written(index: Int, count: Int, sample: [Int64])
        case failed(index: Int, error: String, sample: [Int64])
        case leaseLost
        /// A checkpoint saved (it runs beside the batches: the loop never waits for one).
        case checkpointed
    }

    /// The users after `cursor` (by sub-shard, then id) in batches, up to the pacer's number of writes at once; the
    /// checkpoint advances over the batches written (or handed to the retry table) in order.
    /// Reads (of `readBatches` batches each) are queued `readsAhead` ahead of the writers, so
    /// the one connection reading is never idle. The checkpoint is saved beside the batches, one save
    /// at a time, each of the position confirmed when it starts (a batch confirmed meanwhile
    /// goes into the next save): a loop that waited for every save spent 6.4 s of a 14.8 s
    /// pre-warm of a million users doing so. Returns about `verifyRatio` of the ids written.
    private func writeUsers(
        _ task: TaskExecution, _ payload: KATaskPayload, fence: KALeaseFence, from cursor: KAUserPosition, done: Int64
    ) async throws -> [Int64] {
        let reservation = payload.reservation
        let lease = fence.lease
        let shop = reservation.shopID
        var pacer = Pacer(
            options: options, deadline: reservation.startsAt.addingTimeInterval(-options.safetyMargin.seconds),
            startsAt: reservation.startsAt)
        var readPosition = cursor
        var confirmed = (cursor: cursor, done: done)
        var ranges: [Int: (last: KAUserPosition, count: Int)] = [:]
        var finished = Set<Int>()
        var nextIndex = 0
        var nextToConfirm = 0
        var exhausted = false
        var sample: [Int64] = []
        let deadline = reservation.startsAt.addingTimeInterval(-options.safetyMargin.seconds)
        defer { deadlines.remove(live: reservation.liveID) }
        // A read is `readBatches` batches: one query per batch spent most of a read's time on
        // the query itself rather than on its rows. Reads run `readsAhead` ahead of the writers,
        // each after the one before it (keyset order), so the database keeps reading while the
        // writers catch up, and the writers keep writing while it reads.
        let readSize = options.batchSize * Self.readBatches
        var reads: [Task<PostgresTexts, any Error>] = []
        func queueRead() {
            let previous = reads.last
            reads.append(
                Task { [limiter, source] in
                    var after = cursor
                    if let previous {
                        let rows = try await previous.value
                        // The one before was the last: nothing after it.
                        guard rows.count == readSize else { return rows.rows(0..<0) }
                        after = KAUserPosition(of: rows.integer(row: rows.count - 1, column: 0))
                    }
                    try await limiter.acquire(readSize)
                    return try await source.users(of: shop, after: after, limit: readSize)
                })
        }
        var unwritten: [PostgresTexts] = []  // batches read, in order, not yet handed to a writer
        for _ in 0..<Self.readsAhead { queueRead() }
        defer { for read in reads { read.cancel() } }
        let connections = KAWriterConnections(cache.redis.configuration)
        var waits = StageWaits(
            label: "prewarm_ka_stage_wait_seconds_total", stages: Self.stages, factory: metricsFactory)
        do {
            try await writeBatches()
        } catch {
            await connections.close()
            throw error
        }
        await connections.close()
        logger.info(
            "users written; the batch loop waited on",
            metadata: ["live": "\(reservation.liveID)", "waits": "\(waits.summary(Self.stages))"])
        func writeBatches() async throws {
            try await withThrowingTaskGroup(of: BatchOutcome.self) { group in
                var inFlight = 0
                var saving = false  // a checkpoint in flight
                var saved = confirmed.done  // what the last save started was of
                while true {
                    let writers = pacer.writers(remaining: max(payload.users - confirmed.done, 0))
                    while inFlight < writers {
                        if unwritten.isEmpty, !exhausted, !reads.isEmpty {
                            let current = reads.removeFirst()
                            let readStarted = ContinuousClock.now
                            let fetched = try await withTaskCancellationHandler {
                                try await current.value
                            } onCancel: {
                                current.cancel()
                            }
                            waits.waited("read", since: readStarted)
                            if fetched.count < readSize {
                                exhausted = true
                                for read in reads { read.cancel() }  // each would find nothing
                                reads = []
                            } else {
                                queueRead()
                            }
                            unwritten = stride(from: 0, to: fetched.count, by: options.batchSize).map {
                                fetched.rows($0..<min($0 + options.batchSize, fetched.count))
                            }
                        }
                        guard !unwritten.isEmpty else { break }
                        let rows = unwritten.removeFirst()
                        let index = nextIndex
                        let after = readPosition
                        readPosition = KAUserPosition(of: rows.integer(row: rows.count - 1, column: 0))
                        ranges[index] = (readPosition, rows.count)
                        nextIndex += 1
                        inFlight += 1
                        let through = readPosition
                        group.addTask { [self] in
                            let (entries, sample) = userEntries(rows, shop: shop, endsAt: reservation.endsAt)
                            do {
                                let result = try await cache.write(entries, fence: fence, writers: connections)
                                switch result {
                                case .written: return .written(index: index, count: entries.count, sample: sample)
                                case .leaseLost: return .leaseLost
                                }
                            } catch {
                                // The batch goes to the retry table; the task moves on.
                                let item = KARetryItem(
                                    shopID: shop, liveID: reservation.liveID, after: after, through: through,
                                    endsAt: reservation.endsAt)
                                try await retries.add(
                                    kind: Self.kind, taskID: task.record.id, item: item, error: "\(error)",
                                    maxAttempts: options.retryAttempts)
                                return .failed(index: index, error: "\(error)", sample: sample)
                            }
                        }
                    }
                    let writeStarted = ContinuousClock.now
                    guard let outcome = try await group.next() else { break }
                    waits.waited("write", since: writeStarted)
                    switch outcome {
                    case .checkpointed: saving = false
                    case .leaseLost:
                        throw lease.refused("Redis refused a write: another runner holds the lease")
                    case .written(let index, let count, let picked):
                        inFlight -= 1
                        finished.insert(index)
                        sample += picked
                        written.increment(by: count)
                        pacer.record(count)
                    case .failed(let index, let error, let picked):
                        inFlight -= 1
                        finished.insert(index)
                        sample += picked
                        logger.warning(
                            "a batch failed and went to the retry table",
                            metadata: ["live": "\(reservation.liveID)", "error": "\(error)"])
                    }
                    while finished.contains(nextToConfirm), let range = ranges[nextToConfirm] {
                        confirmed = (range.last, confirmed.done + Int64(range.count))
                        finished.remove(nextToConfirm)
                        ranges[nextToConfirm] = nil
                        nextToConfirm += 1
                    }
                    if !saving, confirmed.done != saved {
                        saving = true
                        saved = confirmed.done
                        let (cursor, done, rate) = (confirmed.cursor.description, confirmed.done, pacer.reportedRate)
                        group.addTask {
                            try await task.checkpoint(cursor: cursor, done: done, total: payload.users, rate: rate)
                            return .checkpointed
                        }
                    }
                    if case .checkpointed = outcome { continue }
                    if let rate = pacer.rate {
                        deadlines.update(
                            live: reservation.liveID, eta: Double(max(payload.users - confirmed.done, 0)) / rate,
                            deadline: deadline)
                    }
                    try await warnIfLate(pacer, remaining: payload.users - confirmed.done, reservation)
                }
            }
        }
        // What a writer managed here: the next reservation's deadline check starts from it.
        if let rate = pacer.rate, confirmed.done - done >= Int64(options.batchSize * 4) {
            try? await cache.recordRate(rate / Double(max(pacer.current, 1)))
        }
        return sample
    }

    /// A batch's keys, values and expiries, and about `verifyRatio` of its ids picked at
    /// random for the verification pass.
    func userEntries(_ rows: PostgresTexts, shop: Int64, endsAt: Date) -> (KACache.Entries, [Int64]) {
        var entries = KACache.Entries()
        entries.reserve(rows.count, valueBytes: rows.bytes.count)
        var random = BatchRandom(
            expiryBase: Int64(endsAt.timeIntervalSince1970 * 1000) + Int64(options.ttlAfterEnd.milliseconds),
            jitter: options.ttlJitter.milliseconds)
        // Rows come by sub-shard: a key prefix made once per run of one.
        var prefix: (subShard: Int64, bytes: [UInt8]) = (-1, [])
        let threshold = UInt64(min(max(options.verifyRatio, 0), 1) * Double(UInt32.max))
        var sample: [Int64] = []
        for row in 0..<rows.count {
            let user = rows.integer(row: row, column: 0)
            let subShard = KACache.subShard(ofUser: user)
            if subShard != prefix.subShard { prefix = (subShard, cache.userKeyPrefix(shop: shop, subShard: subShard)) }
            entries.append(keyPrefix: prefix.bytes, id: user, value: rows[row, 1], expiry: random.expiry())
            if random.next() & 0xFFFF_FFFF < threshold { sample.append(user) }
        }
        return (entries, sample)
    }

    /// Alerts once, as soon as the measured rate says the pre-warm cannot end before the
    /// stream starts (even with every writer it may use).
    private func warnIfLate(_ pacer: Pacer, remaining: Int64, _ reservation: Reservation) async throws {
        guard let finish = pacer.predictedFinish(remaining: remaining), finish > reservation.startsAt else { return }
        try await KADeadlineRisk(cache: cache, alerts: alerts).raise(
            reservation, finish: finish,
            "\(remaining) users left at \(Int(pacer.rate ?? 0)) users/s with \(pacer.current) writers "
                + "(at most \(options.maxWriters))")
    }

    /// Waits (the task beating meanwhile) until the task's retry rows are written; fails the
    /// task if one ran out of attempts.
    private func waitForRetries(_ task: TaskExecution, _ payload: KATaskPayload) async throws {
        while true {
            let (pending, exhausted) = try await retries.count(taskID: task.record.id)
            if exhausted > 0 {
                throw PrewarmFailed(reason: "\(exhausted) batches could not be written (out of retries)")
            }
            if pending == 0 { return }
            try await Task.sleep(for: .milliseconds(500))
        }
    }

    /// Reads back the shop's keys and a sample of the user keys: the ids picked while
    /// writing, and, for a task resumed from a checkpoint, a sample of those written before it
    /// from PostgreSQL. Returns how many are missing.
    private func verify(_ payload: KATaskPayload, written: [Int64], resumedAfter resumed: KAUserPosition) async throws
        -> Int
    {
        let shop = payload.reservation.shopID
        var users = written
        if resumed > .start {
            users += try await source.sampleUsers(of: shop, ratio: options.verifyRatio, through: resumed)
        }
        let keys =
            [cache.shopKey(shop), cache.staffKey(shop), cache.productsKey(shop), cache.marketingKey(shop)]
            + users.map { cache.userKey(shop: shop, user: $0) }
        return keys.count - (try await cache.existing(keys))
    }

    /// The retry drainer's write: the users of a failed batch, read again and written without
    /// a lease (the data is the same whoever writes it).
    public func retry(_ item: RetryItem) async throws {
        let batch = try item.decodeItem(KARetryItem.self)
        let rows =
            if let range = batch.range {
                try await source.users(of: batch.shopID, after: range.after, through: range.through)
            } else {
                try await source.users(of: batch.shopID, afterUser: batch.after, throughUser: batch.through)
            }
        let (entries, _) = userEntries(rows, shop: batch.shopID, endsAt: batch.endsAt)
        try await cache.write(entries)
        written.increment(by: entries.count)
    }
}
