import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// One plain-HTTP/1.1 call: what the pool sends and what it answers.
struct HTTP1Call: Sendable {
    var method: HTTPMethod
    var host: String
    var port: Int
    /// The path and query, as sent on the request line.
    var target: String
    var headers: [(String, String)] = []
    var body: ByteBuffer?
    var deadline: NIODeadline
}

struct HTTP1Answer: Sendable {
    var status: Int
    var body: ByteBuffer
}

/// Why a call through the pool failed (mapped to `DownstreamError` by its caller).
enum HTTP1Failure: Error, Equatable {
    /// The deadline passed: waiting for a connection, connecting, or waiting for the answer.
    case timeout
    /// Refused, reset or closed before the whole answer arrived.
    case connection(String)
    /// The answer was larger than the pool accepts.
    case tooLarge
    /// The pool was shut down.
    case closed
}

/// A keep-alive pool of plain HTTP/1.1 connections per host, on SwiftNIO's event loops: a
/// call takes an idle connection (or opens one, up to `maxPerHost`, or waits its turn),
/// writes the request, and gets the whole answer from the connection's handler in one
/// promise. What async-http-client does for a call, without what these calls never need
/// (redirects, streaming bodies, TLS, tracing), for about a third of its CPU per call.
///
/// A connection the server closed while idle is found closed and replaced; one idle longer
/// than `idleTimeout` is closed rather than reused (servers drop idle connections after a
/// while, and a request sent into that moment fails). A GET that fails on a reused
/// connection before any answer arrived is sent once more on a new one.
final class HTTP1Pool: Sendable {
    private let group: any EventLoopGroup
    private let connectTimeout: TimeAmount
    private let maxPerHost: Int
    private let idleTimeout: TimeAmount
    private let maxBodyBytes: Int
    private let state = Mutex(State())

    private struct HostKey: Hashable {
        var host: String
        var port: Int
    }

    private struct Idle {
        var channel: any Channel
        var since: NIODeadline
    }

    private struct Waiter {
        var id: Int
        var continuation: CheckedContinuation<Grant, any Error>
    }

    /// What a caller gets: a connection to use, or the right to open one.
    private enum Grant {
        case channel(any Channel)
        case connect
    }

    private struct Host {
        var idle: [Idle] = []
        /// Connections open or being opened, idle or in use.
        var open = 0
        var waiters = CircularBuffer<Waiter>()
    }

    private struct State {
        var hosts: [HostKey: Host] = [:]
        var closed = false
        var nextWaiter = 0
    }

    init(
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, connectTimeout: TimeAmount,
        maxPerHost: Int, idleTimeout: TimeAmount = .seconds(50), maxBodyBytes: Int = 8 << 20
    ) {
        self.group = group
        self.connectTimeout = connectTimeout
        self.maxPerHost = max(maxPerHost, 1)
        self.idleTimeout = idleTimeout
        self.maxBodyBytes = maxBodyBytes
    }

    func execute(_ call: HTTP1Call) async throws -> HTTP1Answer {
        let key = HostKey(host: call.host, port: call.port)
        var (channel, reused) = try await connection(key, deadline: call.deadline)
        while true {
            let outcome: Result<(HTTP1Answer, keepAlive: Bool), any Error>
            do {
                outcome = .success(try await send(call, on: channel))
            } catch {
                outcome = .failure(error)
            }
            switch outcome {
            case .success(let (answer, keepAlive)):
                release(key, channel, reusable: keepAlive)
                return answer
            case .failure(let error):
                release(key, channel, reusable: false)
                guard reused, call.method == .GET, case HTTP1Failure.connection = error,
                    NIODeadline.now() < call.deadline
                else { throw error }
                // The server closed the connection as we reused it: once more, on a new one.
                (channel, reused) = try await connection(key, deadline: call.deadline)
                reused = false
            }
        }
    }

    /// Closes the idle connections and fails the waiting callers; connections in use close
    /// when their calls end, and later calls fail.
    func shutdown() async {
        let (idle, waiters) = state.withLock { state in
            state.closed = true
            var idle: [any Channel] = []
            var waiters: [Waiter] = []
            for (key, host) in state.hosts {
                idle += host.idle.map(\.channel)
                waiters += host.waiters
                state.hosts[key]?.idle = []
                state.hosts[key]?.waiters = []
                state.hosts[key]?.open -= host.idle.count
            }
            return (idle, waiters)
        }
        for waiter in waiters { waiter.continuation.resume(throwing: HTTP1Failure.closed) }
        for channel in idle { try? await channel.close() }
    }

    // MARK: connections

    /// A connection to `key`, and whether it served a call before.
    private func connection(_ key: HostKey, deadline: NIODeadline) async throws -> (any Channel, reused: Bool) {
        var stale: [any Channel] = []
        let grant: Grant? = try state.withLock { state in
            guard !state.closed else { throw HTTP1Failure.closed }
            // Behind callers already waiting, wait too: a connection goes to the first in line.
            guard state.hosts[key, default: Host()].waiters.isEmpty else { return nil }
            return take(&state.hosts[key, default: Host()], stale: &stale)
        }
        for channel in stale { channel.close(promise: nil) }
        switch grant {
        case .channel(let channel): return (channel, true)
        case .connect: return (try await open(key, deadline: deadline), false)
        case nil: break
        }
        switch try await wait(key, deadline: deadline) {
        case .channel(let channel): return (channel, true)
        case .connect: return (try await open(key, deadline: deadline), false)
        }
    }

    /// An idle connection still open and fresh, or the right to open one; nil if the caller
    /// must wait. Connections found closed or too long idle go to `stale` (no longer counted).
    private func take(_ host: inout Host, stale: inout [any Channel]) -> Grant? {
        let now = NIODeadline.now()
        while let idle = host.idle.popLast() {
            if idle.channel.isActive, now - idle.since < idleTimeout { return .channel(idle.channel) }
            stale.append(idle.channel)
            host.open -= 1
        }
        guard host.open < maxPerHost else { return nil }
        host.open += 1
        return .connect
    }

    /// Waits for a connection another call releases (or the right to open one), until the
    /// deadline or the task's cancellation.
    private func wait(_ key: HostKey, deadline: NIODeadline) async throws -> Grant {
        let id = state.withLock { state in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        let timer = group.next().scheduleTask(deadline: deadline) { [self] in
            abandon(key, id: id, with: HTTP1Failure.timeout)
        }
        defer { timer.cancel() }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                var stale: [any Channel] = []
                // Checked under the lock: a timer or a cancellation that came before the
                // waiter is in line found nothing to take out.
                let result: Result<Grant, any Error>? = state.withLock { state in
                    guard !state.closed else { return .failure(HTTP1Failure.closed) }
                    guard !Task.isCancelled else { return .failure(CancellationError()) }
                    guard NIODeadline.now() < deadline else { return .failure(HTTP1Failure.timeout) }
                    // A connection may have come back between the first look and now.
                    if state.hosts[key, default: Host()].waiters.isEmpty,
                        let grant = take(&state.hosts[key, default: Host()], stale: &stale)
                    {
                        return .success(grant)
                    }
                    state.hosts[key, default: Host()].waiters.append(Waiter(id: id, continuation: continuation))
                    return nil
                }
                for channel in stale { channel.close(promise: nil) }
                if let result { continuation.resume(with: result) }
            }
        } onCancel: {
            abandon(key, id: id, with: CancellationError())
        }
    }

    /// Takes a waiter out of the line (its deadline passed, or its task was cancelled).
    private func abandon(_ key: HostKey, id: Int, with error: any Error) {
        let waiter: Waiter? = state.withLock { state in
            guard let index = state.hosts[key]?.waiters.firstIndex(where: { $0.id == id }) else { return nil }
            return state.hosts[key]?.waiters.remove(at: index)
        }
        waiter?.continuation.resume(throwing: error)
    }

    /// Gives a connection back after a call: to the first waiter, or to the idle list; a
    /// connection not to be reused is closed and its place given to the first waiter.
    private func release(_ key: HostKey, _ channel: (any Channel)?, reusable: Bool) {
        let now = NIODeadline.now()
        let (waiter, grant, close): (Waiter?, Grant?, Bool) = state.withLock { state in
            let keep = reusable && !state.closed && (channel?.isActive ?? false)
            if !keep { state.hosts[key]?.open -= 1 }
            guard var host = state.hosts[key] else { return (nil, nil, !keep) }
            defer { state.hosts[key] = host }
            if let waiter = host.waiters.popFirst() {
                if keep, let channel { return (waiter, .channel(channel), false) }
                host.open += 1
                return (waiter, .connect, true)
            }
            if keep, let channel { host.idle.append(Idle(channel: channel, since: now)) }
            return (nil, nil, !keep)
        }
        if close, let channel { channel.close(promise: nil) }
        if let waiter, let grant { waiter.continuation.resume(returning: grant) }
    }

    private func open(_ key: HostKey, deadline: NIODeadline) async throws -> any Channel {
        let limit = min(connectTimeout, max(deadline - .now(), .milliseconds(1)))
        let maxBodyBytes = maxBodyBytes
        do {
            return try await ClientBootstrap(group: group)
                .connectTimeout(limit)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        // The callers build their requests from their own settings and
                        // percent-encoded values: NIO's check of every outbound header and
                        // URI byte was a twentieth of a busy pod's CPU.
                        try channel.pipeline.syncOperations.addHTTPClientHandlers(
                            enableOutboundHeaderValidation: false)
                        try channel.pipeline.syncOperations.addHandler(HTTP1CallHandler(maxBodyBytes: maxBodyBytes))
                    }
                }
                .connect(host: key.host, port: key.port).get()
        } catch {
            release(key, nil, reusable: false)
            if let error = error as? ChannelError, case .connectTimeout = error { throw HTTP1Failure.timeout }
            throw HTTP1Failure.connection("\(error)")
        }
    }

    // MARK: a call on a connection

    private func send(_ call: HTTP1Call, on channel: any Channel) async throws -> (HTTP1Answer, keepAlive: Bool) {
        var head = HTTPRequestHead(version: .http1_1, method: call.method, uri: call.target)
        head.headers.add(name: "Host", value: call.port == 80 ? call.host : "\(call.host):\(call.port)")
        for (name, value) in call.headers { head.headers.add(name: name, value: value) }
        if let body = call.body {
            head.headers.add(name: "Content-Length", value: String(body.readableBytes))
        }
        let promise = channel.eventLoop.makePromise(of: (HTTP1Answer, Bool).self)
        channel.writeAndFlush(
            HTTP1CallHandler.Pending(head: head, body: call.body, deadline: call.deadline, promise: promise),
            promise: nil)
        let (answer, keepAlive) = try await promise.futureResult.get()
        return (answer, keepAlive)
    }
}

/// The last handler of a pooled connection: sends one call at a time and completes its
/// promise with the whole answer, or with a failure when the deadline passes (the
/// connection is then closed: its state is unknown) or the connection ends first.
private final class HTTP1CallHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = Pending
    typealias OutboundOut = HTTPClientRequestPart

    struct Pending: Sendable {
        var head: HTTPRequestHead
        var body: ByteBuffer?
        var deadline: NIODeadline
        var promise: EventLoopPromise<(HTTP1Answer, Bool)>
    }

    private let maxBodyBytes: Int
    private var promise: EventLoopPromise<(HTTP1Answer, Bool)>?
    private var timer: Scheduled<Void>?
    private var status = 0
    private var keepAlive = true
    private var body: ByteBuffer?

    init(maxBodyBytes: Int) {
        self.maxBodyBytes = maxBodyBytes
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise writePromise: EventLoopPromise<Void>?) {
        let pending = unwrapOutboundIn(data)
        guard promise == nil else {
            pending.promise.fail(HTTP1Failure.connection("a second call on a busy connection"))
            return
        }
        promise = pending.promise
        status = 0
        body = nil
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: pending.deadline) { [self] in
            finish(.failure(HTTP1Failure.timeout))
            context.close(promise: nil)
        }
        context.write(wrapOutboundOut(.head(pending.head)), promise: nil)
        if let body = pending.body { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        context.write(wrapOutboundOut(.end(nil)), promise: writePromise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = Int(head.status.code)
            keepAlive = head.isKeepAlive
        case .body(var part):
            guard promise != nil else { return }
            if (body?.readableBytes ?? 0) + part.readableBytes > maxBodyBytes {
                finish(.failure(HTTP1Failure.tooLarge))
                context.close(promise: nil)
                return
            }
            if body == nil { body = part } else { body!.writeBuffer(&part) }
        case .end:
            let answer = HTTP1Answer(status: status, body: body ?? ByteBuffer())
            body = nil
            finish(.success((answer, keepAlive)))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(.failure(HTTP1Failure.connection("the server closed the connection")))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        finish(.failure(HTTP1Failure.connection("\(error)")))
        context.close(promise: nil)
    }

    private func finish(_ result: Result<(HTTP1Answer, Bool), any Error>) {
        guard let promise else { return }
        self.promise = nil
        timer?.cancel()
        timer = nil
        promise.completeWith(result)
    }
}
