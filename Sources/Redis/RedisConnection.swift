import BlockingIO
import CHiredis
import Logging

/// One connection to Redis, served by a thread of its own.
///
/// Commands from concurrent tasks are queued and sent in order. A dropped connection is
/// reopened on the next command (see `RedisConfiguration.retryAfterConnectionLoss`).
/// Call `close()` when done: it ends the thread.
public final class RedisConnection: Sendable {
    public let configuration: RedisConfiguration
    private let session: ConfinedSession<RedisSession>

    private init(configuration: RedisConfiguration, logger: Logger) {
        self.configuration = configuration
        self.session = ConfinedSession(
            RedisSession(configuration: configuration, logger: logger), threadName: "redis")
    }

    /// Opens the connection now, so a wrong address or password is reported at start-up.
    public static func connect(
        _ configuration: RedisConfiguration,
        logger: Logger = Logger(label: "prewarm.redis")
    ) async throws -> RedisConnection {
        let connection = RedisConnection(configuration: configuration, logger: logger)
        try await connection.session.open()
        return connection
    }

    /// Sends one command; an error reply is thrown as `RedisError` with code `.server`.
    @discardableResult
    public func send(_ command: RedisCommand) async throws -> RedisReply {
        let reply = try await pipeline([command])[0]
        if case .error(let message) = reply {
            throw RedisError(.server, operation: command.name, message: message)
        }
        return reply
    }

    @discardableResult
    public func send(_ name: String, _ arguments: any RedisArgument...) async throws -> RedisReply {
        try await send(RedisCommand(name, arguments: arguments))
    }

    /// Writes every command before reading any reply: one round trip per chunk instead of
    /// one per command. Error replies come back in place, as Redis sends them.
    public func pipeline(_ commands: [RedisCommand]) async throws -> [RedisReply] {
        if commands.isEmpty { return [] }
        return try await session.run { try $0.execute(commands) }
    }

    /// Values of `keys` in order, `nil` where a key is missing. Large key lists are sent as
    /// several MGETs in one pipeline.
    public func mget(_ keys: [String], chunkSize: Int = 500) async throws -> [[UInt8]?] {
        if keys.isEmpty { return [] }
        let commands = stride(from: 0, to: keys.count, by: chunkSize).map { start in
            RedisCommand("MGET", arguments: Array(keys[start..<min(start + chunkSize, keys.count)]))
        }
        var values: [[UInt8]?] = []
        values.reserveCapacity(keys.count)
        for reply in try await pipeline(commands) {
            guard case .array(let elements) = reply else {
                throw RedisError(.server, operation: "MGET", message: reply.string ?? "unexpected reply \(reply)")
            }
            values.append(contentsOf: elements.map(\.bytes))
        }
        return values
    }

    /// Runs a Lua script by its SHA, loading it on first use and again after the server
    /// lost it (`NOSCRIPT`, e.g. after a restart or `SCRIPT FLUSH`).
    public func run(
        _ script: RedisScript,
        keys: [any RedisArgument] = [],
        arguments: [any RedisArgument] = []
    ) async throws -> RedisReply {
        try await run(script, keys: RedisArguments(keys), arguments: RedisArguments(arguments))
    }

    /// `run(_:keys:arguments:)` with arguments already laid out (for scripts given
    /// thousands of them).
    public func run(_ script: RedisScript, keys: RedisArguments, arguments: RedisArguments) async throws -> RedisReply {
        let reply = try await session.run { try $0.evaluate(script, keys: keys, arguments: arguments) }
        if case .error(let message) = reply {
            throw RedisError(.server, operation: "EVALSHA \(script.name)", message: message)
        }
        return reply
    }

    /// Closes the connection and ends its thread. Later calls throw.
    public func close() async {
        await session.close()
    }
}
