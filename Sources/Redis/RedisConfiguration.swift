/// Where and how to reach Redis. Validated by the executable that reads it; the password
/// never appears in `description`.
public struct RedisConfiguration: Sendable, CustomStringConvertible {
    public enum Endpoint: Sendable, Equatable {
        case tcp(host: String, port: Int)
        case unixSocket(path: String)
    }

    public var endpoint: Endpoint
    /// ACL user name; `nil` authenticates as the default user (or not at all).
    public var user: String?
    public var password: String?
    public var database: Int
    /// Seconds allowed for the TCP or socket connect.
    public var connectTimeout: Double
    /// Seconds a command (or a whole pipeline read) may wait for its reply.
    public var commandTimeout: Double
    /// Name shown by `CLIENT LIST`, which helps operators tell workers apart.
    public var clientName: String?
    /// A command that fails because a previously working connection was found dropped
    /// (server restart, idle kill, failover) is sent once more on a new connection.
    /// Like Lettuce's auto-reconnect this is at-least-once: only turn it on for callers
    /// whose commands are idempotent, which prewarm's are by design.
    public var retryAfterConnectionLoss: Bool

    public init(
        endpoint: Endpoint = .tcp(host: "127.0.0.1", port: 6379),
        user: String? = nil,
        password: String? = nil,
        database: Int = 0,
        connectTimeout: Double = 2,
        commandTimeout: Double = 5,
        clientName: String? = nil,
        retryAfterConnectionLoss: Bool = true
    ) {
        self.endpoint = endpoint
        self.user = user
        self.password = password
        self.database = database
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
        self.clientName = clientName
        self.retryAfterConnectionLoss = retryAfterConnectionLoss
    }

    public var description: String {
        let place: String
        switch endpoint {
        case .tcp(let host, let port): place = "\(host):\(port)"
        case .unixSocket(let path): place = "unix:\(path)"
        }
        let auth = password == nil ? "" : " (password set)"
        return "redis \(user.map { "\($0)@" } ?? "")\(place)/\(database)\(auth)"
    }
}

extension RedisConfiguration {
    /// What a new connection sends before anything else: AUTH (when there is a password),
    /// SELECT (another database), CLIENT SETNAME.
    var handshake: [RedisCommand] {
        var commands: [RedisCommand] = []
        if let password {
            var auth = RedisCommand("AUTH")
            if let user { auth.arguments.append(Array(user.utf8)) }
            auth.arguments.append(Array(password.utf8))
            commands.append(auth)
        }
        if database != 0 { commands.append(RedisCommand("SELECT", database)) }
        if let clientName { commands.append(RedisCommand("CLIENT", "SETNAME", clientName)) }
        return commands
    }

    /// The first error among the handshake's replies, as the error a caller sees.
    func handshakeError(_ commands: [RedisCommand], _ replies: [RedisReply]) -> RedisError? {
        for (command, reply) in zip(commands, replies) {
            guard case .error(let message) = reply else { continue }
            if command.name == "AUTH" {
                return RedisError(
                    .authenticationFailed, operation: "AUTH",
                    message: "\(message) (user '\(user ?? "default")' on \(description))")
            }
            let code: RedisError.Code = message.hasPrefix("NOAUTH") ? .authenticationFailed : .server
            return RedisError(code, operation: command.name, message: message)
        }
        return nil
    }
}
