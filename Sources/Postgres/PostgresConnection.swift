import BlockingIO
import Logging

/// One PostgreSQL connection, served by a thread of its own. Use one per task (or per
/// worker slot): statements from concurrent callers would interleave, which breaks
/// transactions. A broken connection is reopened on the next call; statements are never
/// re-sent automatically.
public final class PostgresConnection: Sendable {
    public let configuration: PostgresConfiguration
    private let session: ConfinedSession<PostgresSession>

    private init(configuration: PostgresConfiguration, logger: Logger) {
        self.configuration = configuration
        self.session = ConfinedSession(
            PostgresSession(configuration: configuration, logger: logger), threadName: "postgres")
    }

    /// Connects now, so a wrong address or password is reported at start-up.
    public static func connect(
        _ configuration: PostgresConfiguration,
        logger: Logger = Logger(label: "prewarm.postgres")
    ) async throws -> PostgresConnection {
        try configuration.validate()
        let connection = PostgresConnection(configuration: configuration, logger: logger)
        try await connection.session.open()
        return connection
    }

    /// Runs one statement with `$1`, `$2`, ... bound to `parameters` (never spliced into
    /// the SQL text). `nil` binds SQL NULL.
    @discardableResult
    public func query(_ sql: String, _ parameters: [(any PostgresEncodable)?] = []) async throws -> PostgresResult {
        let texts = parameters.map { $0?.postgresText }
        return try await session.run { try $0.query(sql, texts) }
    }

    /// A statement whose columns are all integers (`bigint`, `integer`, counts), its result
    /// read without a `String` per cell: for large results of ids and counts.
    public func integers(_ sql: String, _ parameters: [(any PostgresEncodable)?] = []) async throws
        -> PostgresIntegers
    {
        let texts = parameters.map { $0?.postgresText }
        return try await session.run { try $0.integers(sql, texts) }
    }

    /// A statement's result as text cells in one buffer, without a `String` per cell: for
    /// large results passed on as bytes (JSON built by the server, say).
    public func texts(_ sql: String, _ parameters: [(any PostgresEncodable)?] = []) async throws -> PostgresTexts {
        let texts = parameters.map { $0?.postgresText }
        return try await session.run { try $0.texts(sql, texts) }
    }

    /// Runs `body` between BEGIN and COMMIT; any error rolls back and is rethrown.
    public func transaction<T: Sendable>(
        _ body: (PostgresConnection) async throws -> T
    ) async throws -> T {
        try await query("BEGIN")
        do {
            let value = try await body(self)
            try await query("COMMIT")
            return value
        } catch {
            _ = try? await query("ROLLBACK")
            throw error
        }
    }

    /// Bulk-loads rows with `COPY ... FROM STDIN`; returns the number of rows copied.
    /// The table and column names are quoted as identifiers by libpq.
    @discardableResult
    public func copy(into table: String, columns: [String], rows: PostgresCopyRows) async throws -> Int {
        let data = rows.bytes
        return try await session.run { try $0.copy(into: table, columns: columns, data: data) }
    }

    /// Bulk-loads rows with `COPY ... FROM STDIN WITH (FORMAT binary)`; returns the number
    /// of rows copied.
    @discardableResult
    public func copy(into table: String, columns: [String], rows: PostgresBinaryCopyRows) async throws -> Int {
        let data = rows.bytes + PostgresBinaryCopyRows.trailer
        return try await session.run { try $0.copy(into: table, columns: columns, data: data, binary: true) }
    }

    /// Walks a table in key order, one batch at a time, without OFFSET. `sql` takes the
    /// last key seen as `$1` and the batch size as `$2` (more parameters follow as `$3`...),
    /// e.g. `SELECT id, name FROM t WHERE id > $1 ORDER BY id LIMIT $2`. `key` reads the
    /// key of a row; iteration stops at the first short batch. Returns the rows seen.
    @discardableResult
    public func forEachKeysetBatch<Key: PostgresEncodable>(
        _ sql: String,
        after start: Key,
        batchSize: Int,
        parameters: [(any PostgresEncodable)?] = [],
        key: (PostgresRow) throws -> Key,
        body: (PostgresResult) async throws -> Void
    ) async throws -> Int {
        var cursor = start
        var seen = 0
        while true {
            let batch = try await query(sql, [cursor, batchSize] + parameters)
            guard let last = batch.rows.last else { return seen }
            seen += batch.count
            try await body(batch)
            cursor = try key(last)
            if batch.count < batchSize { return seen }
        }
    }

    /// The value libpq uses for a connection parameter (`keepalives_idle`, `tcp_user_timeout`,
    /// ...), nil when it has none.
    public func parameter(_ keyword: String) async throws -> String? {
        try await session.run { try $0.parameter(keyword) }
    }

    /// Closes the connection and ends its thread.
    public func close() async {
        await session.close()
    }
}
