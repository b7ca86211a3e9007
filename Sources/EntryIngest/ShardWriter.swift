import Foundation
import Postgres

/// Writes a batch of events into the 16 log shards in one transaction: one COPY into a
/// staging table, then one call that runs `INSERT ... SELECT ... ON CONFLICT (event_id) DO
/// NOTHING` for each shard present (migration 104). A replayed event is skipped by its unique `event_id`, so replays and
/// retries after an outage store each event once.
///
/// Uniqueness is per table, so an event replayed after the archiver moved it would be
/// stored again. Events old enough to have been archived (`archiveAfterDays` less a day of
/// margin) are therefore checked against the archive too, under a shared lock on their
/// shard that the archiver's batches take exclusively, so the check cannot race a move.
public struct ShardWriter: Sendable {
    public let database: PostgresConnection
    public let archiveAfterDays: Int
    public var now: @Sendable () -> Date = { Date() }

    public init(database: PostgresConnection, archiveAfterDays: Int = ArchiveSettings().afterDays) {
        self.database = database
        self.archiveAfterDays = archiveAfterDays
    }

    /// Events entered before this may already be in the archive.
    public func archiveGuard() -> Date { now().addingTimeInterval(-Double(archiveAfterDays - 1) * 86_400) }

    /// Returns how many events were new.
    @discardableResult
    public func write(_ events: [(event: StoreEntryEvent, store: Store)]) async throws -> Int {
        guard !events.isEmpty else { return 0 }
        var rows = PostgresCopyRows()
        for (event, store) in events {
            rows.append([
                EntryIngestSchema.shard(of: event.userID), event.eventID, event.userID, event.storeID, store.categoryID,
                store.zoneID, event.enteredAt,
            ])
        }
        let guardTime = archiveGuard()
        return try await database.transaction { transaction in
            // A temporary table per connection, emptied at each commit, created again after
            // a reconnect (quietly: CREATE ... IF NOT EXISTS would send a notice per batch).
            try await transaction.query("SELECT prewarm_ensure_entry_staging()")
            try await transaction.copy(
                into: "entry_staging",
                columns: ["shard", "event_id", "user_id", "store_id", "category_id", "zone_id", "entered_at"],
                rows: rows)
            // Into each shard present, in shard order, skipping events already stored or
            // archived (see migration 104).
            return try await transaction.query(
                "SELECT prewarm_insert_staged_entries($1, $2)", [guardTime, EntryArchiver.lockSpace]
            ).first?[0].int ?? 0
        }
    }
}
