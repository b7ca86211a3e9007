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
    private let loop: LoopState

    struct Inbox {
        var requests: [RedisEventLoopRequest] = []
        var scheduled = false
    }

    private init(configuration: RedisConfiguration, eventLoop: any EventLoop, logger: Logger) {
        self.configuration = configuration
        self.eventLoop = eventLoop
        self.logger = logger
        self.loop = LoopState(configuration: configuration, eventLoop: eventLoop, logger: logger)
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

/// The connection's state, only ever touched on its event loop.
private final class LoopState: @unchecked Sendable {
    let configuration: RedisConfiguration
    let eventLoop: any EventLoop
    let logger: Logger
    var channel: (any Channel)?
    /// Waiting for the connection (and its handshake) to be ready.
    var waiting: [RedisEventLoopRequest] = []
    var connecting = false
    /// Connected and through the handshake.
    var ready = false
    var closed = false
    /// Written, waiting for their replies, oldest first.
    var inFlight = CircularBuffer<InFlight>()
    /// The replies of the oldest request so far.
    var headReplies: [RedisReply] = []
    /// The connection has answered a request: a drop is a loss, not a failure to connect.
    var served = false
    var timer: Scheduled<Void>?
    var reader: UnsafeMutablePointer<redisReader>?

    struct InFlight {
        var request: RedisEventLoopRequest
        var deadline: NIODeadline
    }

    init(configuration: RedisConfiguration, eventLoop: any EventLoop, logger: Logger) {
        self.configuration = configuration
        self.eventLoop = eventLoop
        self.logger = logger
    }

    deinit {
        if let reader { redisReaderFree(reader) }
    }

    var timeout: TimeAmount { .nanoseconds(Int64(configuration.commandTimeout * 1e9)) }

    func send(_ requests: [RedisEventLoopRequest]) {
        if closed {
            let error = RedisError(.closed, operation: "send", message: "the connection is closed")
            for request in requests { request.complete(.failure(error)) }
            return
        }
        guard ready, let channel else {
            waiting.append(contentsOf: requests)
            if !connecting { connect() }
            return
        }
        write(requests, to: channel)
    }

    private func write(_ requests: [RedisEventLoopRequest], to channel: any Channel) {
        var buffer = channel.allocator.buffer(capacity: requests.reduce(0) { $0 + $1.resp.resp.count })
        let deadline = NIODeadline.now() + timeout
        for request in requests {
            if request.replies == 0 {
                request.complete(.success([]))
                continue
            }
            buffer.writeBytes(request.resp.resp)
            inFlight.append(InFlight(request: request, deadline: deadline))
        }
        guard buffer.readableBytes > 0 else { return }
        channel.writeAndFlush(buffer, promise: nil)
        if timer == nil { armTimer(at: deadline) }
    }

    private func armTimer(at deadline: NIODeadline) {
        timer = eventLoop.scheduleTask(deadline: deadline) { [self] in
            timer = nil
            guard let head = inFlight.first else { return }
            if head.deadline <= .now() {
                fail(
                    RedisError(
                        .timeout, operation: "reply",
                        message: "no reply within \(configuration.commandTimeout) s (\(configuration.description))"),
                    closing: true)
            } else {
                armTimer(at: head.deadline)
            }
        }
    }

    private func connect() {
        connecting = true
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(.nanoseconds(Int64(configuration.connectTimeout * 1e9)))
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RedisReplyHandler(state: self, channel: channel))
                }
            }
        let connected: EventLoopFuture<any Channel>
        switch configuration.endpoint {
        case .tcp(let host, let port):
            connected = bootstrap.channelOption(.socketOption(.so_keepalive), value: 1).connect(host: host, port: port)
        case .unixSocket(let path):
            connected = bootstrap.connect(unixDomainSocketPath: path)
        }
        connected.hop(to: eventLoop).whenComplete { [self] result in
            switch result {
            case .success(let channel) where closed:
                connecting = false
                channel.close(promise: nil)  // closed while it was being opened
            case .success(let channel): handshake(on: channel)
            case .failure(let error):
                connecting = false
                // NIO lists every address it tried; the first one's error says enough.
                let reason = (error as? NIOConnectionError)?.connectionErrors.first.map { "\($0.error)" } ?? "\(error)"
                failWaiting(
                    RedisError(
                        .connectionFailed, operation: "connect", message: "\(reason) (\(configuration.description))"))
            }
        }
    }

    /// AUTH, SELECT and CLIENT SETNAME before anything else; then the waiting requests.
    private func handshake(on channel: any Channel) {
        if let reader { redisReaderFree(reader) }
        reader = redisReaderCreate()
        self.channel = channel
        ready = false
        served = false
        let setup = configuration.handshake
        let ready: @Sendable (Result<[RedisReply], any Error>) -> Void = { [self, setup] result in
            handshakeDone(result, setup: setup, channel: channel)  // replies complete on the loop
        }
        guard !setup.isEmpty else { return ready(.success([])) }
        var resp = RedisCommands()
        for command in setup { resp.add(command) }
        write([RedisEventLoopRequest(resp: resp, replies: setup.count, complete: ready)], to: channel)
    }

    private func handshakeDone(_ result: Result<[RedisReply], any Error>, setup: [RedisCommand], channel: any Channel) {
        connecting = false
        do {
            if let error = configuration.handshakeError(setup, try result.get()) { throw error }
        } catch {
            self.channel = nil
            channel.close(promise: nil)
            failWaiting(error)
            return
        }
        ready = true
        logger.debug("redis connected", metadata: ["redis": "\(configuration.description)"])
        let requests = waiting
        waiting = []
        write(requests, to: channel)
    }

    private func failWaiting(_ error: any Error) {
        let requests = waiting
        waiting = []
        for request in requests { request.complete(.failure(error)) }
    }

    /// Bytes from Redis: every complete reply to its request, in order.
    func received(_ buffer: inout ByteBuffer) {
        guard let reader else { return }
        let fed = buffer.withUnsafeReadableBytes { bytes in
            redisReaderFeed(reader, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), bytes.count)
        }
        buffer.moveReaderIndex(to: buffer.writerIndex)
        guard fed == REDIS_OK else { return protocolError() }
        while true {
            var raw: UnsafeMutableRawPointer?
            guard redisReaderGetReply(reader, &raw) == REDIS_OK else { return protocolError() }
            guard let raw else { return }
            let reply = RedisSession.copy(raw.assumingMemoryBound(to: redisReply.self))
            freeReplyObject(raw)
            guard !inFlight.isEmpty else {
                return fail(
                    RedisError(.protocolError, operation: "reply", message: "a reply no request was waiting for"),
                    closing: true)
            }
            headReplies.append(reply)
            if headReplies.count == inFlight[inFlight.startIndex].request.replies {
                let done = inFlight.removeFirst()
                let replies = headReplies
                headReplies = []
                served = true
                done.request.complete(.success(replies))
            }
        }
    }

    private func protocolError() {
        let message = reader.map { reader in
            withUnsafeBytes(of: reader.pointee.errstr) { raw in
                let text = raw.prefix { $0 != 0 }
                return String(decoding: text, as: UTF8.self)
            }
        }
        fail(RedisError(.protocolError, operation: "reply", message: message ?? "unreadable reply"), closing: true)
    }

    /// The channel closed under us (the server, the network, our own close).
    func closed(_ channel: any Channel) {
        guard self.channel === channel else { return }
        let lost = served
        self.channel = nil
        ready = false
        connecting = false
        let error =
            lost
            ? RedisError(
                .connectionLost, operation: "reply", message: "the connection was closed (\(configuration.description))"
            )
            : RedisError(
                .connectionFailed, operation: "connect",
                message: "the connection was closed before it answered (\(configuration.description))")
        fail(error, closing: false)
        failWaiting(error)
    }

    /// Fails every request written on the channel (their replies can no longer be matched).
    private func fail(_ error: any Error, closing: Bool) {
        let requests = inFlight
        inFlight.removeAll()
        headReplies = []
        timer?.cancel()
        timer = nil
        if closing, let channel {
            self.channel = nil
            ready = false
            channel.close(promise: nil)
        }
        for entry in requests { entry.request.complete(.failure(error)) }
    }

    func close() {
        closed = true
        let error = RedisError(.closed, operation: "send", message: "the connection is closed")
        fail(error, closing: true)
        failWaiting(error)
    }
}

/// Feeds what Redis sends to the connection's reader, and tells it when the channel closes.
private final class RedisReplyHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let state: LoopState
    let channel: any Channel

    init(state: LoopState, channel: any Channel) {
        self.state = state
        self.channel = channel
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        state.received(&buffer)
    }

    func channelInactive(context: ChannelHandlerContext) {
        state.closed(channel)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
