import PrewarmRuntime

/// entry-ingest's tables: the store dimension, 16 shards of the entry log (shard =
/// user id % 16) and the month-partitioned archive the nightly archiver fills.
public enum EntryIngestSchema {
    public static let shardCount = 16

    public static func shard(of userID: Int64) -> Int { Int(userID % Int64(shardCount)) }

    public static func shardTable(_ shard: Int) -> String {
        "store_entry_log_" + (shard < 10 ? "0\(shard)" : "\(shard)")
    }

    /// `SELECT shard, <columns>` over all 16 shards (UNION ALL), to read them as one table.
    public static func allShards(_ columns: String) -> String {
        (0..<shardCount).map { "SELECT \($0) AS shard, \(columns) FROM \(shardTable($0))" }
            .joined(separator: " UNION ALL ")
    }

    public static let archiveTable = "store_entry_archive"
    public static let archiveStateTable = "store_entry_archive_state"

    /// Versions 100-199 belong to entry-ingest.
    public static let migrations: [Migration] = [
        Migration(
            version: 100, name: "entry-ingest: stores",
            statements: [
                """
                CREATE TABLE stores (
                    store_id bigint PRIMARY KEY CHECK (store_id > 0),
                    name text NOT NULL,
                    category_id bigint NOT NULL,
                    zone_id bigint NOT NULL,
                    is_open boolean NOT NULL DEFAULT true,
                    updated_at timestamptz NOT NULL DEFAULT now())
                """
            ]),
        Migration(
            version: 101, name: "entry-ingest: 16 entry log shards",
            statements: (0..<shardCount).flatMap { shard -> [String] in
                let table = shardTable(shard)
                return [
                    // event_id is unique, so a replayed event is not stored twice.
                    """
                    CREATE TABLE \(table) (
                        id bigserial PRIMARY KEY,
                        event_id uuid NOT NULL UNIQUE,
                        user_id bigint NOT NULL,
                        store_id bigint NOT NULL,
                        category_id bigint NOT NULL,
                        zone_id bigint NOT NULL,
                        entered_at timestamptz NOT NULL,
                        ingested_at timestamptz NOT NULL DEFAULT now())
                    """,
                    "CREATE INDEX \(table)_user_time ON \(table) (user_id, entered_at)",
                    "CREATE INDEX \(table)_time ON \(table) (entered_at)",
                ]
            }),
        Migration(
            version: 102, name: "entry-ingest: month-partitioned archive",
            statements: [
                """
                CREATE TABLE \(archiveTable) (
                    shard smallint NOT NULL,
                    id bigint NOT NULL,
                    event_id uuid NOT NULL,
                    user_id bigint NOT NULL,
                    store_id bigint NOT NULL,
                    category_id bigint NOT NULL,
                    zone_id bigint NOT NULL,
                    entered_at timestamptz NOT NULL,
                    ingested_at timestamptz NOT NULL,
                    archived_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (shard, id, entered_at),
                    UNIQUE (event_id, entered_at))
                PARTITION BY RANGE (entered_at)
                """
            ]),
        Migration(
            version: 103, name: "entry-ingest: archive month partitions on demand",
            statements: [
                // DDL takes no parameters, so the archiver calls this with parameters and the
                // bounds are quoted here by format(%L); the suffix is checked to be yyyymm.
                // The lock serialises two archivers creating the same month.
                """
                CREATE FUNCTION prewarm_ensure_archive_partition(month_start timestamptz, month_end timestamptz,
                                                                 suffix text) RETURNS boolean
                LANGUAGE plpgsql AS $$
                DECLARE
                    partition text := '\(archiveTable)_' || suffix;
                BEGIN
                    IF suffix !~ '^[0-9]{6}$' OR month_end <= month_start THEN
                        RAISE EXCEPTION 'archive partition %: bad month % .. %', suffix, month_start, month_end;
                    END IF;
                    PERFORM pg_advisory_xact_lock(hashtext('prewarm_archive_partitions'));
                    IF to_regclass(partition) IS NOT NULL THEN
                        RETURN false;
                    END IF;
                    EXECUTE format('CREATE TABLE %I PARTITION OF \(archiveTable) FOR VALUES FROM (%L) TO (%L)',
                                   partition, month_start, month_end);
                    RETURN true;
                END
                $$
                """
            ]),
        Migration(
            version: 104, name: "entry-ingest: staged batch into its shards in one call",
            statements: [
                // One round trip per batch instead of one per shard. Each statement of a
                // volatile function sees a fresh snapshot, so after the shared locks the
                // archive check sees every move committed before them.
                """
                CREATE FUNCTION prewarm_ensure_entry_staging() RETURNS void LANGUAGE plpgsql AS $$
                BEGIN
                    IF to_regclass('pg_temp.entry_staging') IS NULL THEN
                        CREATE TEMP TABLE entry_staging (
                            shard smallint, event_id uuid, user_id bigint, store_id bigint, category_id bigint,
                            zone_id bigint, entered_at timestamptz) ON COMMIT DELETE ROWS;
                    END IF;
                END
                $$
                """,
                """
                CREATE FUNCTION prewarm_insert_staged_entries(guard_time timestamptz, lock_space integer)
                RETURNS bigint LANGUAGE plpgsql AS $$
                DECLARE
                    shard_number integer;
                    inserted bigint;
                    total bigint := 0;
                BEGIN
                    FOR shard_number IN EXECUTE
                        'SELECT DISTINCT shard FROM entry_staging WHERE entered_at < $1 ORDER BY 1' USING guard_time
                    LOOP
                        PERFORM pg_advisory_xact_lock_shared(lock_space, shard_number);
                    END LOOP;
                    FOR shard_number IN EXECUTE 'SELECT DISTINCT shard FROM entry_staging ORDER BY 1' LOOP
                        EXECUTE format(
                            'INSERT INTO %I (event_id, user_id, store_id, category_id, zone_id, entered_at) '
                            'SELECT event_id, user_id, store_id, category_id, zone_id, entered_at '
                            'FROM entry_staging s WHERE s.shard = $1 '
                            'AND NOT (s.entered_at < $2 AND EXISTS (SELECT 1 FROM \(archiveTable) a '
                            'WHERE a.event_id = s.event_id AND a.entered_at = s.entered_at)) '
                            'ON CONFLICT (event_id) DO NOTHING',
                            'store_entry_log_' || lpad(shard_number::text, 2, '0'))
                        USING shard_number, guard_time;
                        GET DIAGNOSTICS inserted = ROW_COUNT;
                        total := total + inserted;
                    END LOOP;
                    RETURN total;
                END
                $$
                """,
            ]),
        Migration(
            version: 105, name: "entry-ingest: the archive's cutoff, for the writers' guard",
            statements: [
                // One row: the latest cutoff any archive run used. Writers check events older
                // than it (plus a day) against the archive, whatever their own settings say.
                """
                CREATE TABLE \(archiveStateTable) (
                    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
                    cutoff timestamptz NOT NULL,
                    updated_at timestamptz NOT NULL DEFAULT now())
                """
            ]),
        Migration(
            version: 106, name: "entry-ingest: a covering index for reading a user's visits",
            statements: (0..<shardCount).flatMap { shard -> [String] in
                let table = shardTable(shard)
                // The store-scorer reads a batch of users' visits of the window: with the store,
                // category and zone in the index, an index-only scan (no heap visit per row).
                return [
                    """
                    CREATE INDEX \(table)_user_visits ON \(table) (user_id, entered_at)
                        INCLUDE (store_id, category_id, zone_id)
                    """,
                    "DROP INDEX \(table)_user_time",
                ]
            }),
    ]
}
