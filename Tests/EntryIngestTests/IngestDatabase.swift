import EntryIngest
import Logging
import Postgres
import PrewarmRuntime
import TestSupport

/// A PostgreSQL schema of the test's own, migrated, with stores 1...20 (category g % 4,
/// zone g % 3); `drop()` removes it.
struct IngestDatabase {
    let schema: String
    let server: PostgresConfiguration
    let connection: PostgresConnection

    /// On the shared server unless `server` names another.
    static func make(server: PostgresConfiguration? = nil) async throws -> IngestDatabase {
        let server = try server ?? TestEnvironment.postgres()
        let schema = TestEnvironment.uniqueName("ingest")
        let admin = try await PostgresConnection.connect(server)
        try await admin.query("CREATE SCHEMA \(schema)")
        await admin.close()
        let db = try await PostgresConnection.connect(configuration(server, schema))
        try await Migrator.migrate(db, EntryIngestSchema.migrations, logger: Logger(label: "test"))
        try await db.query(
            "INSERT INTO stores (store_id, name, category_id, zone_id) SELECT g, 'store ' || g, g % 4, g % 3 FROM generate_series(1, 20) g"
        )
        return IngestDatabase(schema: schema, server: server, connection: db)
    }

    static func configuration(_ server: PostgresConfiguration, _ schema: String) -> PostgresConfiguration {
        var configuration = server
        configuration.conninfo += " options='-c search_path=\(schema)'"
        return configuration
    }

    /// A connection configuration that lands in this database's schema.
    var configuration: PostgresConfiguration { Self.configuration(server, schema) }

    /// Rows in all 16 shards.
    func shardRows() async throws -> Int {
        try await connection.query("SELECT count(*) FROM (\(EntryIngestSchema.allShards("event_id"))) s").first?[0]
            .int ?? 0
    }

    func archiveRows() async throws -> Int {
        try await connection.query("SELECT count(*) FROM \(EntryIngestSchema.archiveTable)").first?[0].int ?? 0
    }

    /// Every event id stored, shards and archive together, with how often.
    func eventCounts() async throws -> [String: Int] {
        let rows = try await connection.query(
            """
            SELECT event_id::text, count(*) FROM (
                SELECT event_id FROM (\(EntryIngestSchema.allShards("event_id"))) s
                UNION ALL SELECT event_id FROM \(EntryIngestSchema.archiveTable)) e
            GROUP BY 1
            """)
        var counts: [String: Int] = [:]
        for row in rows.rows { counts[row[0].string!] = row[1].int! }
        return counts
    }

    func drop() async {
        await connection.close()
        guard let admin = try? await PostgresConnection.connect(server) else { return }
        _ = try? await admin.query("DROP SCHEMA \(schema) CASCADE")
        await admin.close()
    }
}
