import PrewarmRuntime

/// entry-ingest's tables: the store dimension, 16 shards of the entry log (shard =
/// user id % 16) and the month-partitioned archive the nightly archiver fills.
public enum EntryIngestSchema {
    public static let shardCount = 16

    public static func shard(of userID: Int64) -> Int { Int(userID % Int64(shardCount)) }

    public static func shardTable(_ shard: Int) -> String {
        "store_entry_log_" + (shard < 10 ? "0\(shard)" : "\(shard)")
    }

    public static let archiveTable = "store_entry_archive"

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
    ]
}
