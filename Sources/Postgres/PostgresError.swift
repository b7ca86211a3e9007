import CLibPQ

/// Every failure of the PostgreSQL wrapper, with the server's SQLSTATE when there is one.
/// Messages never include the conninfo or password.
public struct PostgresError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        /// Could not connect (refused, unreachable, authentication failed, bad conninfo).
        case connectionFailed
        /// The connection broke while in use.
        case connectionLost
        /// The server rejected the statement; see `sqlState`.
        case server
        /// The connection was closed by its owner.
        case closed
        /// A value could not be encoded for the server (a malformed UUID for binary COPY).
        case invalidValue
    }

    public var code: Code
    public var operation: String
    public var message: String
    /// Five-character SQLSTATE, e.g. `23505` for a unique violation.
    public var sqlState: String?
    public var detail: String?
    public var constraint: String?

    public init(
        _ code: Code, operation: String, message: String,
        sqlState: String? = nil, detail: String? = nil, constraint: String? = nil
    ) {
        self.code = code
        self.operation = operation
        self.message = message
        self.sqlState = sqlState
        self.detail = detail
        self.constraint = constraint
    }

    public var isUniqueViolation: Bool { sqlState == "23505" }

    /// An outage or contention that a later retry can get past, as opposed to a statement
    /// or data the server will always reject.
    public var isTransient: Bool {
        switch code {
        case .connectionFailed:
            // A refused password will be refused again: that is configuration, not an outage.
            return sqlState != "28P01" && sqlState != "28000" && !message.contains("authentication failed")
        case .connectionLost: return true
        case .closed, .invalidValue: return false
        case .server:
            guard let sqlState else { return false }
            let transient: Set<String> = [
                "40001", "40P01",  // serialization failure, deadlock
                "55P03", "57014",  // lock not available, statement timeout / cancel
                "57P01", "57P02", "57P03",  // admin or crash shutdown, cannot connect now
                "53300", "53400",  // too many connections, configuration limit
            ]
            return transient.contains(sqlState) || sqlState.hasPrefix("08")
        }
    }

    public var description: String {
        var text = "PostgreSQL \(operation) failed"
        if let sqlState { text += " [\(sqlState)]" }
        text += ": \(message)"
        if let detail { text += " (\(detail))" }
        return text
    }
}

public enum PostgresVersion {
    /// The libpq this process runs with, e.g. `15.18`.
    public static var libpq: String {
        let version = Int(PQlibVersion())
        return "\(version / 10000).\(version % 10000)"
    }
}
