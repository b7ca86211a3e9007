import Foundation
import Postgres
import Synchronization

/// Writes a batch of events into the 16 log shards: COPY straight into the shards (over the
/// pool's connections, each a transaction over its own share of the shards), or, when some
/// are stored already, in one transaction: COPY into a staging table and one call that runs
/// `INSERT ... SELECT ... ON CONFLICT (event_id) DO NOTHING` for each shard present
/// (migration 104). A replayed event is skipped by its unique `event_id`, so replays and
/// retries after an outage store each event once.
///
/// Uniqueness is per table, so an event replayed after the archiver moved it would be
/// stored again. Events old enough to have been archived (see `archiveGuard()`) are
/// therefore checked against the archive too, under a shared lock on their shard that the
/// archiver's batches take exclusively, so the check cannot race a move.
///
/// Batches may be written at the same time (one per connection of the pool).
public struct ShardWriter: Sendable {
    public let pool: PostgresPool
    public let archiveAfterDays: Int
    /// Connections (and transactions) one batch's direct COPY is spread over, each taking
    /// its share of the shards.
    public let copyConnections: Int
    public var now: @Sendable () -> Date = { Date() }
    private let directCopy = DirectCopyState()
    private let recordedCutoff = CachedValue<Date?>(maximumAge: .seconds(60))

    public init(pool: PostgresPool, archiveAfterDays: Int = ArchiveSettings().afterDays, copyConnections: Int = 2) {
        self.pool = pool
        self.archiveAfterDays = archiveAfterDays
        self.copyConnections = max(1, min(copyConnections, pool.maximum))
    }

    /// A writer over one connection (the pool takes it over).
    public init(database: PostgresConnection, archiveAfterDays: Int = ArchiveSettings().afterDays) {
        self.init(pool: PostgresPool(database), archiveAfterDays: archiveAfterDays)
    }

    /// Events entered before this may already be in the archive: by this worker's setting,
    /// or by the latest cutoff an archive run recorded (an operator may have archived with
    /// fewer days), each with a day of margin. The recorded cutoff is read at most once a
    /// minute; an archive run in between is covered by the next run, which drops a row whose
    /// event is archived already.
    public func archiveGuard() async throws -> Date {
        let own = now().addingTimeInterval(-Double(archiveAfterDays - 1) * 86_400)
        let recorded = try await recordedCutoff.value {
            try await pool.withConnection { database in
                try await database.query(
                    "SELECT extract(epoch FROM cutoff)::float8 FROM \(EntryIngestSchema.archiveStateTable)"
                ).first?[0].double.map { Date(timeIntervalSince1970: $0 + 86_400) }
            }
        }
        return max(own, recorded ?? .distantPast)
    }

    /// Returns how many events were new.
    ///
    /// Two paths. Usually no event of a batch is stored yet, so the rows are copied straight
    /// into their shards. A transaction of that copy that meets a unique violation (a
    /// replay, a retried batch, a duplicate inside the batch) rolls back, and its events go
    /// through the staging table, which skips what is stored; the next batches take that
    /// path too for a while, since replays come in runs. Events old enough to have been
    /// archived always take it, for the archive check.
    @discardableResult
    public func write(_ events: [(event: StoreEntryEvent, store: Store)]) async throws -> Int {
        guard !events.isEmpty else { return 0 }
        let guardTime = try await archiveGuard()
        if directCopy.shouldTry(), !events.contains(where: { $0.event.enteredAt < guardTime }) {
            let (stored, conflicted) = try await copyIntoShards(events)
            guard !conflicted.isEmpty else { return stored }
            directCopy.conflicted()
            return try await stored + stageAndInsert(conflicted, guardTime: guardTime)
        }
        return try await stageAndInsert(events, guardTime: guardTime)
    }

    private static let columns = ["event_id", "user_id", "store_id", "category_id", "zone_id", "entered_at"]

    /// Appends an event's row for `columns` (after its shard, for the staging table).
    private static func append(
        _ item: (event: StoreEntryEvent, store: Store), shard: Int? = nil, to rows: inout PostgresBinaryCopyRows
    ) {
        rows.startRow(fields: columns.count + (shard == nil ? 0 : 1))
        if let shard { rows.append(Int16(shard)) }
        rows.append(item.event.eventID)
        rows.append(item.event.userID)
        rows.append(item.event.storeID)
        rows.append(item.store.categoryID)
        rows.append(item.store.zoneID)
        rows.append(item.event.enteredAt)
    }

    /// Bytes of one row in the binary format, for reserving buffers.
    private static let rowBytes = 2 + 20 + 5 * 12

    /// COPY straight into the shards, the shards split over `copyConnections` transactions
    /// (disjoint tables, so two backends never contend for the same index pages). Returns
    /// the rows stored and the events of the transactions that met a stored event (rolled
    /// back, for the staging path); any other failure is thrown, and the batch retried.
    private func copyIntoShards(
        _ events: [(event: StoreEntryEvent, store: Store)]
    ) async throws -> (stored: Int, conflicted: [(event: StoreEntryEvent, store: Store)]) {
        // One pass: each event's row goes into its shard's COPY data.
        let parts = copyConnections
        var shardRows = [PostgresBinaryCopyRows?](repeating: nil, count: EntryIngestSchema.shardCount)
        var partEvents = [[Int]](repeating: [], count: parts)
        let reserve = (events.count / EntryIngestSchema.shardCount + 16) * Self.rowBytes * 5 / 4
        for (index, item) in events.enumerated() {
            let shard = EntryIngestSchema.shard(of: item.event.userID)
            if shardRows[shard] == nil { shardRows[shard] = PostgresBinaryCopyRows(reservingBytes: reserve) }
            Self.append(item, to: &shardRows[shard]!)
            partEvents[shard % parts].append(index)
        }
        let copies = shardRows
        let outcomes = try await withThrowingTaskGroup(of: (Int, Bool).self) { group in
            for part in 0..<parts where !partEvents[part].isEmpty {
                group.addTask {
                    do {
                        try await pool.withConnection { database in
                            try await database.transaction { transaction in
                                for shard in stride(from: part, to: copies.count, by: parts) {
                                    guard let rows = copies[shard] else { continue }
                                    try await transaction.copy(
                                        into: EntryIngestSchema.shardTable(shard), columns: Self.columns, rows: rows)
                                }
                            }
                        }
                        return (part, true)
                    } catch let error as PostgresError where error.isUniqueViolation {
                        return (part, false)
                    }
                }
            }
            return try await group.reduce(into: [Int: Bool]()) { $0[$1.0] = $1.1 }
        }
        var stored = 0
        var conflicted: [(event: StoreEntryEvent, store: Store)] = []
        for (part, succeeded) in outcomes {
            if succeeded {
                stored += partEvents[part].count
            } else {
                conflicted += partEvents[part].map { events[$0] }
            }
        }
        return (stored, conflicted)
    }

    private func stageAndInsert(
        _ events: [(event: StoreEntryEvent, store: Store)], guardTime: Date
    ) async throws -> Int {
        var rows = PostgresBinaryCopyRows(reservingBytes: events.count * Self.rowBytes)
        for item in events { Self.append(item, shard: EntryIngestSchema.shard(of: item.event.userID), to: &rows) }
        let staged = rows
        return try await pool.withConnection { database in
            try await database.transaction { transaction in
                // The archive check relies on each statement seeing what committed before it
                // (after the shared locks), whatever the server's default isolation.
                try await transaction.query("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
                // A temporary table per connection, emptied at each commit, created again after
                // a reconnect (quietly: CREATE ... IF NOT EXISTS would send a notice per batch).
                try await transaction.query("SELECT prewarm_ensure_entry_staging()")
                try await transaction.copy(into: "entry_staging", columns: ["shard"] + Self.columns, rows: staged)
                // Into each shard present, in shard order, skipping events already stored or
                // archived (see migration 104).
                return try await transaction.query(
                    "SELECT prewarm_insert_staged_entries($1, $2)", [guardTime, EntryArchiver.lockSpace]
                ).first?[0].int ?? 0
            }
        }
    }
}

/// Whether to try the direct COPY: after a conflict, the next `pause` batches skip it.
final class DirectCopyState: Sendable {
    private let skip = Mutex(0)
    private let pause: Int

    init(pause: Int = 100) { self.pause = pause }

    func shouldTry() -> Bool {
        skip.withLock { remaining in
            guard remaining > 0 else { return true }
            remaining -= 1
            return false
        }
    }

    func conflicted() { skip.withLock { $0 = pause } }
}

/// A value fetched at most once per `maximumAge`.
final class CachedValue<Value: Sendable>: Sendable {
    private let state = Mutex<(value: Value, at: ContinuousClock.Instant)?>(nil)
    private let maximumAge: Duration

    init(maximumAge: Duration) { self.maximumAge = maximumAge }

    func value(_ fetch: () async throws -> Value) async throws -> Value {
        if let cached = state.withLock({ $0 }), ContinuousClock.now - cached.at < maximumAge { return cached.value }
        let value = try await fetch()
        state.withLock { $0 = (value, .now) }
        return value
    }
}
