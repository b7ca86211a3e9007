import Logging
import NIOCore
import Synchronization

/// Several connections to one Redis, so that concurrent requests (an HTTP read path, a
/// fan-out beside a consume loop) are not serialised behind one socket. Each call goes to
/// the next connection in turn; a call's commands (a pipeline, a script) always travel on
/// one connection, in order.
public final class RedisPool: RedisClient {
    /// How the connections do their I/O.
    public enum Transport: Sendable {
        /// Each connection on a thread of its own, blocking in hiredis (`RedisConnection`).
        case threads
        /// Each connection on an event loop of the group, non-blocking
        /// (`RedisEventLoopConnection`): no thread hop per call, for a read path.
        case eventLoops(any EventLoopGroup)
    }

    public let configuration: RedisConfiguration
    private let connections: [any RedisClient]
    private let next = Atomic<Int>(0)

    private init(configuration: RedisConfiguration, connections: [any RedisClient]) {
        self.configuration = configuration
        self.connections = connections
        var loops: [(loop: any EventLoop, connections: [any RedisClient])] = []
        for connection in connections {
            guard let connection = connection as? RedisEventLoopConnection else { continue }
            if let index = loops.firstIndex(where: { $0.loop === connection.eventLoop }) {
                loops[index].connections.append(connection)
            } else {
                loops.append((connection.eventLoop, [connection]))
            }
        }
        self.loops = loops
    }

    /// Opens `size` connections now, so a wrong address or password is reported at start-up.
    public static func connect(
        _ configuration: RedisConfiguration, size: Int, transport: Transport = .threads,
        logger: Logger = Logger(label: "prewarm.redis")
    ) async throws -> RedisPool {
        var connections: [any RedisClient] = []
        do {
            for _ in 0..<max(size, 1) {
                switch transport {
                case .threads:
                    connections.append(try await RedisConnection.connect(configuration, logger: logger))
                case .eventLoops(let group):
                    connections.append(
                        try await RedisEventLoopConnection.connect(
                            configuration, eventLoop: group.next(), logger: logger))
                }
            }
        } catch {
            for connection in connections { await connection.close() }
            throw error
        }
        return RedisPool(configuration: configuration, connections: connections)
    }

    public var size: Int { connections.count }

    /// The connections of the event loop the caller runs on, when it runs on one of theirs.
    private let loops: [(loop: any EventLoop, connections: [any RedisClient])]

    /// A connection of the caller's own event loop if there is one (its reply then resumes
    /// the caller on the same thread), else the next connection in turn.
    private var connection: any RedisClient {
        let turn = next.wrappingAdd(1, ordering: .relaxed).oldValue
        for (loop, connections) in loops where loop.inEventLoop {
            return connections[turn % connections.count]
        }
        return connections[turn % connections.count]
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
