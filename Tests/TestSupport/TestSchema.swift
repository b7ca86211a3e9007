import Postgres

/// A PostgreSQL schema of the test's own and a pool into it (its connections' search path):
/// the pool is closed and the schema dropped when the test ends. `prepare` applies the
/// migrations the test needs. `server`: a server of the test's own (`PrivatePostgresServer`)
/// instead of the shared one.
public struct TestSchema: Sendable {
    public let name: String
    public let configuration: PostgresConfiguration
    public let pool: PostgresPool

    public static func make(
        _ prefix: String, poolSize: Int = 6, server: PostgresConfiguration? = nil,
        prepare: (PostgresPool) async throws -> Void
    ) async throws -> TestSchema {
        let name = TestEnvironment.uniqueName(prefix)
        let server = try server ?? TestEnvironment.postgres()
        let admin = try await PostgresConnection.connect(server)
        try await admin.query("CREATE SCHEMA \(name)")
        await admin.close()
        var configuration = server
        configuration.conninfo += " options='-c search_path=\(name)'"
        let pool = PostgresPool(configuration, maximum: poolSize)
        closeAfterTest {
            await pool.close()
            if let admin = try? await PostgresConnection.connect(server) {
                _ = try? await admin.query("DROP SCHEMA \(name) CASCADE")
                await admin.close()
            }
        }
        try await prepare(pool)
        return TestSchema(name: name, configuration: configuration, pool: pool)
    }
}
