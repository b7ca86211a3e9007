import BlockingIO
import CHiredis
import Logging
import Synchronization

/// One connection to Redis, served by a thread of its own.
///
/// Requests from concurrent tasks are queued; the thread takes every request waiting at once
/// and sends them as one pipeline (one write, then the replies in order), so many tasks
/// sharing a connection cost one round trip, not one each ("automatic pipelining"). A
/// dropped connection is reopened on the next command (see
/// `RedisConfiguration.retryAfterConnectionLoss`). Call `close()` when done: it ends the
/// thread.
public final class RedisConnection: RedisClient {
    public let configuration: RedisConfiguration
    private let session: ConfinedSession<RedisSession>
    private let queue = Mutex(Queue())

    struct Queue {
        var requests: [RedisRequest] = []
        /// A drain is queued on the thread or running: new requests wait for it.
        var draining = false
    }

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
        return try await submit(.commands(commands))
    }

    /// Commands laid end to end (`RedisCommands`), sent as one pipeline with the requests of
    /// other callers; their replies in order.
    public func pipeline(_ commands: RedisCommands) async throws -> [RedisReply] {
        if commands.count == 0 { return [] }
        return try await submit(.batch(commands))
    }

    public func run(_ script: RedisScript, keys: RedisArguments, arguments: RedisArguments) async throws -> RedisReply {
        let reply = try await submit(.script(script, keys: keys, arguments: arguments))[0]
        if case .error(let message) = reply {
            throw RedisError(.server, operation: "EVALSHA \(script.name)", message: message)
        }
        return reply
    }

    private func submit(_ work: RedisRequest.Work) async throws -> [RedisReply] {
        try await withCheckedThrowingContinuation { continuation in
            let startDrain = queue.withLock { queue in
                queue.requests.append(RedisRequest(work: work, continuation: continuation))
                if queue.draining { return false }
                queue.draining = true
                return true
            }
            guard startDrain else { return }
            if !session.submit({ [self] session in self.drain(session) }) {
                // The thread has stopped: nothing queued will be sent.
                let stranded = queue.withLock { queue in
                    defer {
                        queue.requests = []
                        queue.draining = false
                    }
                    return queue.requests
                }
                let closed = RedisError(.closed, operation: "send", message: "the connection is closed")
                for request in stranded { request.continuation.resume(throwing: closed) }
            }
        }
    }

    /// On the connection's thread: sends what is queued, as one pipeline, until nothing is.
    private func drain(_ session: RedisSession) {
        while true {
            let batch = queue.withLock { queue in
                let requests = queue.requests
                queue.requests = []
                if requests.isEmpty { queue.draining = false }
                return requests
            }
            if batch.isEmpty { return }
            session.execute(batch)
        }
    }

    public func close() async {
        await session.close()
    }
}

/// A caller's commands (or script) waiting for their turn on the connection's thread.
struct RedisRequest: Sendable {
    enum Work: Sendable {
        case commands([RedisCommand])
        case batch(RedisCommands)
        case script(RedisScript, keys: RedisArguments, arguments: RedisArguments)
    }

    let work: Work
    let continuation: CheckedContinuation<[RedisReply], any Error>
}
