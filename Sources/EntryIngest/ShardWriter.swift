import Foundation
import Postgres

/// Writes a batch of events into the 16 log shards in one transaction: one COPY into a
/// staging table, then one `INSERT ... SELECT ... ON CONFLICT (event_id) DO NOTHING` per
/// shard present. A replayed event is skipped by its unique `event_id`, so replays and
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
        let shards = Set(events.map { EntryIngestSchema.shard(of: $0.event.userID) }).sorted()
        let guardTime = archiveGuard()
        let oldShards = Set(
            events.filter { $0.event.enteredAt < guardTime }.map { EntryIngestSchema.shard(of: $0.event.userID) })
        return try await database.transaction { transaction in
            // In shard order, so two writers never wait on each other in a cycle.
            for shard in oldShards.sorted() {
                try await transaction.query(
                    "SELECT pg_advisory_xact_lock_shared($1, $2)", [EntryArchiver.lockSpace, Int32(shard)])
            }
            // Per connection, emptied at each commit; recreated after a reconnect.
            try await transaction.query(
                """
                CREATE TEMP TABLE IF NOT EXISTS entry_staging (
                    shard smallint, event_id uuid, user_id bigint, store_id bigint, category_id bigint,
                    zone_id bigint, entered_at timestamptz) ON COMMIT DELETE ROWS
                """)
            try await transaction.copy(
                into: "entry_staging",
                columns: ["shard", "event_id", "user_id", "store_id", "category_id", "zone_id", "entered_at"],
                rows: rows)
            var inserted = 0
            for shard in shards {
                inserted += try await transaction.query(
                    """
                    INSERT INTO \(EntryIngestSchema.shardTable(shard))
                        (event_id, user_id, store_id, category_id, zone_id, entered_at)
                    SELECT event_id, user_id, store_id, category_id, zone_id, entered_at
                    FROM entry_staging s
                    WHERE shard = $1
                      AND NOT (s.entered_at < $2 AND EXISTS (
                          SELECT 1 FROM \(EntryIngestSchema.archiveTable) a
                          WHERE a.event_id = s.event_id AND a.entered_at = s.entered_at))
                    ON CONFLICT (event_id) DO NOTHING
                    """, [shard, guardTime]
                ).affectedRows
            }
            return inserted
        }
    }
}
