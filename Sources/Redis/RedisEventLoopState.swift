import CHiredis
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The connection's state, only ever touched on its event loop.
final class RedisEventLoopState: @unchecked Sendable {
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
    let state: RedisEventLoopState
    let channel: any Channel

    init(state: RedisEventLoopState, channel: any Channel) {
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
