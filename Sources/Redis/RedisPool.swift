import Logging
import Synchronization

/// Several connections to one Redis, each on its own I/O thread, so that concurrent
/// requests (an HTTP read path, a fan-out beside a consume loop) are not serialised behind
/// one socket. Each call goes to the next connection in turn; a call's commands (a
/// pipeline, a script) always travel on one connection, in order.
public final class RedisPool: RedisClient {
    public let configuration: RedisConfiguration
    private let connections: [RedisConnection]
    private let next = Atomic<Int>(0)

    private init(configuration: RedisConfiguration, connections: [RedisConnection]) {
        self.configuration = configuration
        self.connections = connections
    }

    /// Opens `size` connections now, so a wrong address or password is reported at start-up.
    public static func connect(
        _ configuration: RedisConfiguration, size: Int, logger: Logger = Logger(label: "prewarm.redis")
    ) async throws -> RedisPool {
        var connections: [RedisConnection] = []
        do {
            for _ in 0..<max(size, 1) {
                connections.append(try await RedisConnection.connect(configuration, logger: logger))
            }
        } catch {
            for connection in connections { await connection.close() }
            throw error
        }
        return RedisPool(configuration: configuration, connections: connections)
    }

    public var size: Int { connections.count }

    private var connection: RedisConnection {
        connections[next.wrappingAdd(1, ordering: .relaxed).oldValue % connections.count]
    }

    public func pipeline(_ commands: [RedisCommand]) async throws -> [RedisReply] {
        try await connection.pipeline(commands)
    }

    public func run(_ script: RedisScript, keys: RedisArguments, arguments: RedisArguments) async throws -> RedisReply {
        try await connection.run(script, keys: keys, arguments: arguments)
    }

    public func close() async {
        for connection in connections { await connection.close() }
    }
}
