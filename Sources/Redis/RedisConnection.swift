import BlockingIO
import CHiredis
import Logging

/// One connection to Redis, served by a thread of its own.
///
/// Commands from concurrent tasks are queued and sent in order. A dropped connection is
/// reopened on the next command (see `RedisConfiguration.retryAfterConnectionLoss`).
/// Call `close()` when done: it ends the thread.
public final class RedisConnection: RedisClient {
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

    public func pipeline(_ commands: [RedisCommand]) async throws -> [RedisReply] {
        if commands.isEmpty { return [] }
        return try await session.run { try $0.execute(commands) }
    }

    public func run(_ script: RedisScript, keys: RedisArguments, arguments: RedisArguments) async throws -> RedisReply {
        let reply = try await session.run { try $0.evaluate(script, keys: keys, arguments: arguments) }
        if case .error(let message) = reply {
            throw RedisError(.server, operation: "EVALSHA \(script.name)", message: message)
        }
        return reply
    }

    public func close() async {
        await session.close()
    }
}
