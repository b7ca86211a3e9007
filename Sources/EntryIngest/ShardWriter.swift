import Foundation
import Postgres

/// Writes a batch of events into the 16 log shards in one transaction: one COPY into a
/// staging table, then one `INSERT ... SELECT ... ON CONFLICT (event_id) DO NOTHING` per
/// shard present. A replayed event is skipped by its unique `event_id`, so replays and
/// retries after an outage store each event once.
public struct ShardWriter: Sendable {
    public let database: PostgresConnection

    public init(database: PostgresConnection) {
        self.database = database
    }

    /// Returns how many events were new.
    @discardableResult
    public func write(_ events: [(event: StoreEntryEvent, store: Store)]) async throws -> Int {
        guard !events.isEmpty else { return 0 }
        var rows = PostgresCopyRows()
        let time = Self.timeFormatter()
        for (event, store) in events {
            rows.append([
                EntryIngestSchema.shard(of: event.userID), event.eventID, event.userID, event.storeID, store.categoryID,
                store.zoneID, time.string(from: event.enteredAt),
            ])
        }
        let shards = Set(events.map { EntryIngestSchema.shard(of: $0.event.userID) }).sorted()
        return try await database.transaction { transaction in
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
                    FROM entry_staging WHERE shard = $1
                    ON CONFLICT (event_id) DO NOTHING
                    """, [shard]
                ).affectedRows
            }
            return inserted
        }
    }

    static func timeFormatter() -> ISO8601DateFormatter {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter
    }
}
