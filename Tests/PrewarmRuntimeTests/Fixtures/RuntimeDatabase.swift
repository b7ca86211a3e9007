import Logging
import Postgres
import TestSupport

@testable import PrewarmRuntime

/// A PostgreSQL schema of the test's own with the runtime's tables, and a pool into it; the
/// pool is closed and the schema dropped when the test ends.
struct RuntimeDatabase {
    let schema: String
    let configuration: PostgresConfiguration
    let pool: PostgresPool

    static func make(poolSize: Int = 6) async throws -> RuntimeDatabase {
        let schema = try await TestSchema.make("runtime", poolSize: poolSize) { pool in
            _ = try await pool.withConnection {
                try await Migrator.migrate($0, RuntimeSchema.migrations, logger: Logger(label: "test"))
            }
        }
        return RuntimeDatabase(schema: schema.name, configuration: schema.configuration, pool: schema.pool)
    }

    func queue(heartbeat: Duration = .seconds(1), staleAfter: Duration = .seconds(3)) -> TaskQueue {
        TaskQueue(pool: pool, settings: TaskSettings(heartbeat: heartbeat, staleAfter: staleAfter))
    }

    func scalar(_ sql: String, _ parameters: [(any PostgresEncodable)?] = []) async throws -> Int {
        try await pool.withConnection { try await $0.query(sql, parameters).first?[0].int ?? 0 }
    }
}
