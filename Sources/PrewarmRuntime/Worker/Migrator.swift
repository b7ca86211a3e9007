import Logging
import Postgres

/// One schema change. Versions are unique across the fleet and applied in order; a
/// migration, once released, is never edited (a fix is a new migration).
public struct Migration: Sendable {
    public let version: Int
    public let name: String
    public let statements: [String]

    public init(version: Int, name: String, statements: [String]) {
        self.version = version
        self.name = name
        self.statements = statements
    }
}

/// Applies migrations that are missing, each in its own transaction, under an advisory lock
/// so that pods starting together (or `prewarmctl migrate` beside them) apply each exactly
/// once. Safe to run at every start-up.
public enum Migrator {
    /// Any fixed number: the lock's name for all prewarm migrations.
    static let lockKey: Int64 = 7_314_022_001

    /// Returns the versions this call applied.
    @discardableResult
    public static func migrate(
        _ connection: PostgresConnection, _ migrations: [Migration], logger: Logger
    ) async throws -> [Int] {
        let versions = migrations.map(\.version)
        guard Set(versions).count == versions.count else {
            throw MigrationError(problem: "versions repeat: \(versions.sorted())")
        }
        // The lock comes first: even CREATE TABLE IF NOT EXISTS collides in the catalog when
        // two pods run it at the same moment. Under the lock, a lookup decides (IF NOT EXISTS
        // would log a server notice at every start).
        try await connection.query("SELECT pg_advisory_lock($1)", [lockKey])
        do {
            let missing = try await connection.query(
                "SELECT to_regclass('prewarm_schema_migrations') IS NULL"
            ).first?[0].bool
            if missing ?? true {
                try await connection.query(
                    """
                    CREATE TABLE prewarm_schema_migrations (
                        version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())
                    """)
            }
            let applied = try await apply(connection, migrations.sorted { $0.version < $1.version }, logger)
            try await connection.query("SELECT pg_advisory_unlock($1)", [lockKey])
            return applied
        } catch {
            _ = try? await connection.query("SELECT pg_advisory_unlock($1)", [lockKey])
            throw error
        }
    }

    private static func apply(_ connection: PostgresConnection, _ migrations: [Migration], _ logger: Logger)
        async throws -> [Int]
    {
        let done = Set(
            try await connection.query("SELECT version FROM prewarm_schema_migrations").rows.compactMap { $0[0].int })
        var applied: [Int] = []
        for migration in migrations where !done.contains(migration.version) {
            try await connection.transaction { transaction in
                for statement in migration.statements { try await transaction.query(statement) }
                try await transaction.query(
                    "INSERT INTO prewarm_schema_migrations (version, name) VALUES ($1, $2)",
                    [migration.version, migration.name])
            }
            logger.notice(
                "migration applied", metadata: ["version": "\(migration.version)", "name": "\(migration.name)"])
            applied.append(migration.version)
        }
        return applied
    }
}
