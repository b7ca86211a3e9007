import CHiredis
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// One connection to Redis served by a SwiftNIO event loop instead of a thread of its own:
/// non-blocking, for a read path where the hop to a connection's thread and back costs more
/// than Redis itself. hiredis still speaks the protocol (its reader parses the replies); the
/// event loop does the I/O.
///
/// Like `RedisConnection` it pipelines automatically: every request waiting when the loop
/// comes round is written in one flush, and replies are matched to requests in order. A
/// request's replies must arrive within `commandTimeout` of its write, or the connection is
/// closed and every request on it fails (the reply stream can no longer be trusted), as
/// hiredis does. A dropped connection is reopened on the next request; a request that failed
/// because a connection that had worked was found dropped is sent once more when
/// `retryAfterConnectionLoss` is set.
public final class RedisEventLoopConnection: RedisClient {
    public let configuration: RedisConfiguration
    public let eventLoop: any EventLoop
    private let logger: Logger
    /// Requests not yet handed to the event loop, and whether a hand-over is queued.
    private let inbox = Mutex(Inbox())
    private let scriptSHAs = Mutex<[RedisScript: String]>([:])
    /// Everything else lives on the event loop.
    private let loop: RedisEventLoopState

    struct Inbox {
        var requests: [RedisEventLoopRequest] = []
        var scheduled = false
    }

    private init(configuration: RedisConfiguration, eventLoop: any EventLoop, logger: Logger) {
        self.configuration = configuration
        self.eventLoop = eventLoop
        self.logger = logger
        self.loop = RedisEventLoopState(configuration: configuration, eventLoop: eventLoop, logger: logger)
    }

    /// Opens the connection now, so a wrong address or password is reported at start-up.
    public static func connect(
        _ configuration: RedisConfiguration, eventLoop: any EventLoop,
        logger: Logger = Logger(label: "prewarm.redis")
    ) async throws -> RedisEventLoopConnection {
        let connection = RedisEventLoopConnection(configuration: configuration, eventLoop: eventLoop, logger: logger)
        do {
            _ = try await connection.submit(RedisCommands(), replies: 0)
        } catch {
            await connection.close()
            throw error
        }
        return connection
    }

    public func pipeline(_ commands: [RedisCommand]) async throws -> [RedisReply] {
        if commands.isEmpty { return [] }
        var resp = RedisCommands()
        for command in commands { resp.add(command) }
        return try await submit(resp, replies: commands.count)
    }

    public func pipeline(_ commands: RedisCommands) async throws -> [RedisReply] {
        if commands.count == 0 { return [] }
        return try await submit(commands, replies: commands.count)
    }

    public func run(_ script: RedisScript, keys: RedisArguments, arguments: RedisArguments) async throws -> RedisReply {
        var sha = scriptSHAs.withLock { $0[script] }
        if sha == nil {
            let loaded = try await pipeline([RedisCommand("SCRIPT", "LOAD", script.source)])[0]
            guard case .bulk = loaded, let text = loaded.string else {
                throw RedisError(
                    .server, operation: "SCRIPT LOAD \(script.name)", message: loaded.string ?? "\(loaded)")
            }
            scriptSHAs.withLock { $0[script] = text }
            sha = text
        }
        var reply = try await pipeline([script.command(sha: sha, keys: keys, arguments: arguments)])[0]
        if case .error(let message) = reply, message.hasPrefix("NOSCRIPT") {
            // The server forgot the script (a restart, SCRIPT FLUSH): EVAL caches it again.
            logger.info("redis script not cached on server, sending source", metadata: ["script": "\(script.name)"])
            reply = try await pipeline([script.command(sha: nil, keys: keys, arguments: arguments)])[0]
        }
        if case .error(let message) = reply {
            throw RedisError(.server, operation: "EVALSHA \(script.name)", message: message)
        }
        return reply
    }

    /// Sends `resp` (`replies` commands; none only opens the connection) and waits for its
    /// replies, once more on a new connection if a working one was found dropped.
    private func submit(_ resp: RedisCommands, replies: Int) async throws -> [RedisReply] {
        do {
            return try await send(resp, replies: replies)
        } catch let error as RedisError where error.code == .connectionLost && configuration.retryAfterConnectionLoss {
            logger.warning(
                "redis connection lost, reconnecting to send again",
                metadata: ["redis": "\(configuration.description)", "error": "\(error.message)"])
            return try await send(resp, replies: replies)
        }
    }

    private func send(_ resp: RedisCommands, replies: Int) async throws -> [RedisReply] {
        try await withCheckedThrowingContinuation { continuation in
            let request = RedisEventLoopRequest(resp: resp, replies: replies) { continuation.resume(with: $0) }
            let schedule = inbox.withLock { inbox in
                inbox.requests.append(request)
                if inbox.scheduled { return false }
                inbox.scheduled = true
                return true
            }
            if schedule { eventLoop.execute { [self] in self.handOver() } }
        }
    }

    /// On the event loop: everything waiting in the inbox, written in one flush.
    private func handOver() {
        let requests = inbox.withLock { inbox in
            inbox.scheduled = false
            defer { inbox.requests = [] }
            return inbox.requests
        }
        loop.send(requests)
    }

    public func close() async {
        let closed = eventLoop.submit { [loop] in loop.close() }
        try? await closed.get()
    }
}

/// A caller's commands as RESP, how many replies they expect, and where they go.
struct RedisEventLoopRequest: Sendable {
    let resp: RedisCommands
    let replies: Int
    let complete: @Sendable (Result<[RedisReply], any Error>) -> Void
}
