import EntryIngest
import Logging
import Postgres
import PrewarmRuntime
import TestSupport
import Testing

@Suite("entry-ingest schema migrations", .closesResources)
struct EntryIngestSchemaTests {
    @Test("shards are user id mod 16, named 00 to 15")
    func shards() {
        #expect(EntryIngestSchema.shard(of: 16) == 0)
        #expect(EntryIngestSchema.shard(of: 37) == 5)
        #expect(EntryIngestSchema.shardTable(5) == "store_entry_log_05")
        #expect(EntryIngestSchema.shardTable(15) == "store_entry_log_15")
    }

    @Test("migrations apply once even from pods starting together; a rerun changes nothing")
    func migrateOnce() async throws {
        let schema = TestEnvironment.uniqueName("schema")
        let admin = try await PostgresConnection.connect(try TestEnvironment.postgres())
        try await admin.query("CREATE SCHEMA \(schema)")
        let pods = [
            try await PostgresConnection.connect(try TestEnvironment.postgres(searchPath: schema)),
            try await PostgresConnection.connect(try TestEnvironment.postgres(searchPath: schema)),
        ]
        let logger = Logger(label: "test.migrate")
        let applied = try await withThrowingTaskGroup(of: [Int].self) { group in
            for pod in pods {
                group.addTask { try await Migrator.migrate(pod, EntryIngestSchema.migrations, logger: logger) }
            }
            return try await group.reduce(into: [[Int]]()) { $0.append($1) }
        }
        #expect(
            applied.flatMap { $0 }.sorted() == EntryIngestSchema.migrations.map(\.version),
            "each migration applied by exactly one pod")
        #expect(try await Migrator.migrate(pods[0], EntryIngestSchema.migrations, logger: logger).isEmpty)

        let shards = try await admin.query(
            "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename LIKE 'store_entry_log_%'", [schema])
        #expect(shards.first?[0].int == 16)
        let partitioned = try await admin.query(
            """
            SELECT count(*) FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2
            """, [schema, EntryIngestSchema.archiveTable])
        #expect(partitioned.first?[0].int == 1)

        let insert = """
            INSERT INTO store_entry_log_05 (event_id, user_id, store_id, category_id, zone_id, entered_at)
            VALUES ($1, 37, 1, 1, 1, now())
            """
        try await pods[0].query(insert, ["6f1c2a3e-0000-4000-8000-000000000001"])
        let duplicate = await #expect(throws: PostgresError.self) {
            try await pods[0].query(insert, ["6f1c2a3e-0000-4000-8000-000000000001"])
        }
        #expect(duplicate?.isUniqueViolation == true)

        for pod in pods { await pod.close() }
        try await admin.query("DROP SCHEMA \(schema) CASCADE")
        await admin.close()
    }

    @Test("repeated versions are refused before anything is applied")
    func repeatedVersions() async throws {
        let db = try await PostgresConnection.connect(try TestEnvironment.postgres())
        closeAfterTest { await db.close() }
        let twice = [
            Migration(version: 1, name: "a", statements: []), Migration(version: 1, name: "b", statements: []),
        ]
        await #expect(throws: MigrationError.self) { try await Migrator.migrate(db, twice, logger: Logger(label: "t")) }
    }
}
