import Postgres

/// A PostgreSQL schema of the test's own and a pool into it (its connections' search path):
/// the pool is closed and the schema dropped when the test ends. `prepare` applies the
/// migrations the test needs.
public struct TestSchema: Sendable {
    public let name: String
    public let configuration: PostgresConfiguration
    public let pool: PostgresPool

    public static func make(
        _ prefix: String, poolSize: Int = 6, prepare: (PostgresPool) async throws -> Void
    ) async throws -> TestSchema {
        let name = TestEnvironment.uniqueName(prefix)
        let admin = try await PostgresConnection.connect(try TestEnvironment.postgres())
        try await admin.query("CREATE SCHEMA \(name)")
        await admin.close()
        let configuration = try TestEnvironment.postgres(searchPath: name)
        let pool = PostgresPool(configuration, maximum: poolSize)
        closeAfterTest {
            await pool.close()
            if let admin = try? await PostgresConnection.connect(try TestEnvironment.postgres()) {
                _ = try? await admin.query("DROP SCHEMA \(name) CASCADE")
                await admin.close()
            }
        }
        try await prepare(pool)
        return TestSchema(name: name, configuration: configuration, pool: pool)
    }
}
