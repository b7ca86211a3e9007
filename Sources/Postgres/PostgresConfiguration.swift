import CLibPQ

/// How to reach PostgreSQL: a libpq conninfo (`host=... dbname=...` or a
/// `postgresql://` URI) and, kept apart so it never sits in a logged string, the password.
public struct PostgresConfiguration: Sendable, CustomStringConvertible {
    public var conninfo: String
    /// Overrides any password in `conninfo`; libpq also reads `PGPASSWORD` and `~/.pgpass`.
    public var password: String?
    /// Shown in `pg_stat_activity`, so operators can tell workers apart.
    public var applicationName: String
    /// Seconds allowed to connect.
    public var connectTimeout: Int

    public init(
        conninfo: String,
        password: String? = nil,
        applicationName: String = "prewarm",
        connectTimeout: Int = 5
    ) {
        self.conninfo = conninfo
        self.password = password
        self.applicationName = applicationName
        self.connectTimeout = connectTimeout
    }

    /// Checks that libpq can parse `conninfo`; the message names what is wrong but not the
    /// string itself, which may hold a password.
    public func validate() throws {
        var error: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(conninfo, &error) else {
            let reason = error.map { String(cString: $0) } ?? "unparseable"
            if let error { PQfreemem(error) }
            throw PostgresError(
                .connectionFailed, operation: "parse conninfo",
                message: reason.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        PQconninfoFree(options)
    }

    /// The conninfo with any password removed, for logs and errors.
    public var description: String {
        var error: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(conninfo, &error) else {
            if let error { PQfreemem(error) }
            return "postgres (unparseable conninfo)"
        }
        defer { PQconninfoFree(options) }
        var parts: [String] = []
        var option = options
        while let keyword = option.pointee.keyword {
            if let value = option.pointee.val {
                let name = String(cString: keyword)
                parts.append(name == "password" ? "password=***" : "\(name)=\(String(cString: value))")
            }
            option += 1
        }
        let hidden = password == nil ? "" : " password=***"
        return "postgres \(parts.joined(separator: " "))\(hidden)"
    }
}

extension String {
    func trimmingCharacters(in set: Set<Character>) -> String {
        var view = Substring(self)
        while let first = view.first, set.contains(first) { view.removeFirst() }
        while let last = view.last, set.contains(last) { view.removeLast() }
        return String(view)
    }
}

extension Set where Element == Character {
    static let whitespacesAndNewlines: Set<Character> = [" ", "\t", "\n", "\r"]
}
