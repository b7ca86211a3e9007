import BlockingIO
import CLibPQ
import Glibc
import Logging

/// The libpq connection and everything that touches it; used only on the owning
/// `PostgresConnection`'s I/O thread, which makes `@unchecked Sendable` safe.
final class PostgresSession: BlockingSession, @unchecked Sendable {
    private let configuration: PostgresConfiguration
    private let logger: Logger
    private var connection: OpaquePointer?
    private var noticeContext: Unmanaged<NoticeContext>?

    init(configuration: PostgresConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    deinit { disconnect() }

    func open() throws {
        try ensureConnected()
    }

    func disconnect() {
        if let connection { PQfinish(connection) }
        connection = nil
        noticeContext?.release()
        noticeContext = nil
    }

    /// Connects on first use and again after the connection broke. Statements are never
    /// re-sent on their own: the caller decides whether its work is safe to repeat.
    @discardableResult
    func ensureConnected() throws -> OpaquePointer {
        if let connection, PQstatus(connection) == CONNECTION_OK { return connection }
        if connection != nil {
            logger.warning("postgres connection broken, reconnecting", metadata: ["postgres": "\(configuration)"])
            disconnect()
        }
        // A server that vanishes without closing (a partition, a dead host) must fail the
        // statement waiting on it, not hang it: TCP keepalives and a limit on unacknowledged
        // data, before `dbname` so that the URL's own values override them.
        var keywords: [String?] = Self.tcpDefaults.map(\.keyword) + ["dbname", "application_name", "connect_timeout"]
        var values: [String?] =
            Self.tcpDefaults.map(\.value) + [
                configuration.conninfo, configuration.applicationName, String(configuration.connectTimeout),
            ]
        if let password = configuration.password {
            keywords.append("password")
            values.append(password)
        }
        // libpq reads both arrays up to a NULL entry.
        let opened = withCStrings(keywords + [nil]) { keywordPointers in
            withCStrings(values + [nil]) { valuePointers in
                PQconnectdbParams(keywordPointers, valuePointers, 1)
            }
        }
        guard let opened else {
            throw PostgresError(.connectionFailed, operation: "connect", message: "out of memory")
        }
        guard PQstatus(opened) == CONNECTION_OK else {
            let message = Self.text(PQerrorMessage(opened))
            PQfinish(opened)
            throw PostgresError(.connectionFailed, operation: "connect", message: message)
        }
        let context = Unmanaged.passRetained(NoticeContext(logger: logger))
        PQsetNoticeProcessor(opened, postgresNoticeProcessor, context.toOpaque())
        noticeContext = context
        connection = opened
        return opened
    }

    /// A silent peer is found within about a minute: idle, after 30 s and three unanswered
    /// probes 10 s apart; with data unacknowledged, after 60 s.
    static let tcpDefaults: [(keyword: String, value: String)] = [
        ("keepalives", "1"), ("keepalives_idle", "30"), ("keepalives_interval", "10"), ("keepalives_count", "3"),
        ("tcp_user_timeout", "60000"),
    ]

    /// The value libpq uses for a connection parameter (`PQconninfo`).
    func parameter(_ keyword: String) throws -> String? {
        let connection = try ensureConnected()
        guard let options = PQconninfo(connection) else { return nil }
        defer { PQconninfoFree(options) }
        var option = options
        while let name = option.pointee.keyword {
            if String(cString: name) == keyword { return option.pointee.val.map { String(cString: $0) } }
            option += 1
        }
        return nil
    }

    func query(_ sql: String, _ parameters: [String?]) throws -> PostgresResult {
        let connection = try ensureConnected()
        let result = withCStrings(parameters) { values in
            PQexecParams(connection, sql, Int32(parameters.count), nil, values, nil, nil, 0)
        }
        return try consume(result, operation: Self.operationName(sql))
    }

    /// A statement whose result columns are all integers, read straight from libpq's buffer
    /// into one array (row by row), with no `String` per cell.
    func integers(_ sql: String, _ parameters: [String?]) throws -> PostgresIntegers {
        let connection = try ensureConnected()
        let result = withCStrings(parameters) { values in
            PQexecParams(connection, sql, Int32(parameters.count), nil, values, nil, nil, 0)
        }
        guard let result, PQresultStatus(result) == PGRES_TUPLES_OK else {
            _ = try consume(result, operation: Self.operationName(sql))
            return PostgresIntegers(columns: 0, values: [])
        }
        defer { PQclear(result) }
        let columns = Int(PQnfields(result))
        let rows = Int(PQntuples(result))
        var values: [Int64] = []
        values.reserveCapacity(rows * columns)
        for row in 0..<Int32(rows) {
            for column in 0..<Int32(columns) {
                values.append(
                    PQgetisnull(result, row, column) == 1 ? 0 : Self.integer(PQgetvalue(result, row, column)))
            }
        }
        return PostgresIntegers(columns: columns, values: values)
    }

    /// A statement's result as text cells laid end to end in one buffer: no `String` per cell.
    func texts(_ sql: String, _ parameters: [String?]) throws -> PostgresTexts {
        let connection = try ensureConnected()
        let result = withCStrings(parameters) { values in
            PQexecParams(connection, sql, Int32(parameters.count), nil, values, nil, nil, 0)
        }
        guard let result, PQresultStatus(result) == PGRES_TUPLES_OK else {
            _ = try consume(result, operation: Self.operationName(sql))
            return PostgresTexts(columns: 0, bytes: [], ends: [])
        }
        defer { PQclear(result) }
        let columns = Int(PQnfields(result))
        let rows = Int(PQntuples(result))
        var total = 0
        for row in 0..<Int32(rows) {
            for column in 0..<Int32(columns) { total += Int(PQgetlength(result, row, column)) }
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(total)
        var ends: [Int] = []
        ends.reserveCapacity(rows * columns)
        for row in 0..<Int32(rows) {
            for column in 0..<Int32(columns) {
                let length = Int(PQgetlength(result, row, column))
                if length > 0, let value = PQgetvalue(result, row, column) {
                    value.withMemoryRebound(to: UInt8.self, capacity: length) {
                        bytes.append(contentsOf: UnsafeBufferPointer(start: $0, count: length))
                    }
                }
                ends.append(bytes.count)
            }
        }
        return PostgresTexts(columns: columns, bytes: bytes, ends: ends)
    }

    /// A decimal integer from a C string (libpq's text form of an integer column).
    private static func integer(_ text: UnsafePointer<CChar>?) -> Int64 {
        guard var pointer = text else { return 0 }
        var negative = false
        if pointer.pointee == 0x2D {
            negative = true
            pointer += 1
        }
        var value: Int64 = 0
        while pointer.pointee >= 0x30 && pointer.pointee <= 0x39 {
            value = value &* 10 &+ Int64(pointer.pointee - 0x30)
            pointer += 1
        }
        // Wrapping: Int64.min's digits wrap to Int64.min, which negates to itself.
        return negative ? 0 &- value : value
    }

    /// Streams rows already in COPY text format into `table`.
    /// COPY's data, in the text format or the binary one (whose `data` ends with the
    /// trailer).
    func copy(into table: String, columns: [String], data: [UInt8], binary: Bool = false) throws -> Int {
        let connection = try ensureConnected()
        let target = try ([table] + columns).map { try quoteIdentifier($0, connection) }
        let columnList = target.dropFirst().joined(separator: ", ")
        let sql = "COPY \(target[0]) (\(columnList)) FROM STDIN" + (binary ? " WITH (FORMAT binary)" : "")
        let start = PQexec(connection, sql)
        guard PQresultStatus(start) == PGRES_COPY_IN else {
            return try consume(start, operation: "COPY").affectedRows
        }
        PQclear(start)
        let chunk = 1 << 18
        var offset = 0
        var failure: String?
        data.withUnsafeBufferPointer { buffer in
            while offset < buffer.count {
                let size = min(chunk, buffer.count - offset)
                let sent = UnsafeRawPointer(buffer.baseAddress! + offset).withMemoryRebound(
                    to: CChar.self, capacity: size
                ) { PQputCopyData(connection, $0, Int32(size)) }
                if sent != 1 {
                    failure = Self.text(PQerrorMessage(connection))
                    return
                }
                offset += size
            }
        }
        if PQputCopyEnd(connection, failure) != 1 {
            throw lost(connection, operation: "COPY")
        }
        var affected = 0
        var error: PostgresError?
        while let result = PQgetResult(connection) {
            do {
                affected = try consume(result, operation: "COPY").affectedRows
            } catch let failed as PostgresError {
                error = error ?? failed
            }
        }
        if let error { throw error }
        return affected
    }

    private func quoteIdentifier(_ name: String, _ connection: OpaquePointer) throws -> String {
        // A schema-qualified name is quoted part by part.
        try name.split(separator: ".", omittingEmptySubsequences: false).map { part in
            guard let quoted = PQescapeIdentifier(connection, String(part), part.utf8.count) else {
                throw PostgresError(.server, operation: "COPY", message: "bad identifier '\(name)'")
            }
            defer { PQfreemem(quoted) }
            return String(cString: quoted)
        }.joined(separator: ".")
    }

    /// Copies a libpq result into Swift values (or an error) and frees it.
    private func consume(_ result: OpaquePointer?, operation: String) throws -> PostgresResult {
        guard let result else { throw lost(connection, operation: operation) }
        defer { PQclear(result) }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_EMPTY_QUERY:
            return PostgresResult(columns: [], rows: [], affectedRows: Self.affected(result))
        case PGRES_TUPLES_OK, PGRES_SINGLE_TUPLE:
            return Self.rows(of: result)
        default:
            let field = { (code: Int32) in PQresultErrorField(result, code).map { String(cString: $0) } }
            let sqlState = field(Int32(prewarm_pg_diag_sqlstate))
            if sqlState == nil, let connection, PQstatus(connection) != CONNECTION_OK {
                throw lost(connection, operation: operation)
            }
            throw PostgresError(
                sqlState?.hasPrefix("08") == true ? .connectionLost : .server,
                operation: operation,
                message: field(Int32(prewarm_pg_diag_message_primary)) ?? Self.text(PQresultErrorMessage(result)),
                sqlState: sqlState,
                detail: field(Int32(prewarm_pg_diag_message_detail)),
                constraint: field(Int32(prewarm_pg_diag_constraint_name)))
        }
    }

    private func lost(_ connection: OpaquePointer?, operation: String) -> PostgresError {
        let message = connection.map { Self.text(PQerrorMessage($0)) } ?? "not connected"
        return PostgresError(
            .connectionLost, operation: operation, message: message.isEmpty ? "connection lost" : message)
    }

    private static func rows(of result: OpaquePointer) -> PostgresResult {
        let columnCount = Int(PQnfields(result))
        let rowCount = Int(PQntuples(result))
        let columns = (0..<columnCount).map { String(cString: PQfname(result, Int32($0))) }
        var rows: [PostgresRow] = []
        rows.reserveCapacity(rowCount)
        for row in 0..<Int32(rowCount) {
            let values: [String?] = (0..<Int32(columnCount)).map { column in
                PQgetisnull(result, row, column) == 1 ? nil : String(cString: PQgetvalue(result, row, column))
            }
            rows.append(PostgresRow(columns: columns, values: values))
        }
        return PostgresResult(columns: columns, rows: rows, affectedRows: affected(result))
    }

    private static func affected(_ result: OpaquePointer) -> Int {
        PQcmdTuples(result).flatMap { Int(String(cString: $0)) } ?? 0
    }

    static func text(_ pointer: UnsafePointer<CChar>?) -> String {
        guard let pointer else { return "" }
        return String(cString: pointer).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The statement's first word, for error messages that must not echo the parameters.
    static func operationName(_ sql: String) -> String {
        sql.split(whereSeparator: { $0 == " " || $0 == "\n" }).first.map { $0.uppercased() } ?? "query"
    }
}

/// Routes server NOTICEs to the logger instead of libpq's default, stderr.
final class NoticeContext {
    let logger: Logger
    init(logger: Logger) { self.logger = logger }
}

private func postgresNoticeProcessor(_ context: UnsafeMutableRawPointer?, _ message: UnsafePointer<CChar>?) {
    guard let context, let message else { return }
    let logger = Unmanaged<NoticeContext>.fromOpaque(context).takeUnretainedValue().logger
    logger.notice("postgres notice", metadata: ["message": "\(PostgresSession.text(message))"])
}

/// Calls `body` with a C array of C strings (NULL entries for `nil`) that live for the call.
func withCStrings<R>(_ strings: [String?], _ body: ([UnsafePointer<CChar>?]) -> R) -> R {
    let copies = strings.map { $0.map { strdup($0) } ?? nil }
    defer { copies.forEach { free($0) } }
    return body(copies.map { $0.map { UnsafePointer($0) } })
}
