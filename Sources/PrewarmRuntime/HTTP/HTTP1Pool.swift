import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// A keep-alive pool of plain HTTP/1.1 connections per host, on SwiftNIO's event loops.
///
/// A call waits for a slot of its budget (the caller's cap on calls in flight, if it has
/// one), then takes an idle connection of its host, or opens one (up to `maxPerHost`), or
/// waits for one. Both waits happen without a task: when an answer ends, the event loop
/// that read it hands its connection to the next call of that host and its budget slot to
/// the next call of that budget, and writes that call at once. The caller's task is resumed
/// with the answer, and is not needed again until its next call (a slot held while a
/// resumed task waits for a thread would be a slot without a call in flight).
///
/// What async-http-client does for a call, without what these calls never need (redirects,
/// streaming bodies, TLS, tracing). A connection the
/// server closed while idle is found closed and replaced; one idle longer than
/// `idleTimeout` is closed rather than reused (servers drop idle connections after a while,
/// and a request sent into that moment fails). A GET that fails on a reused connection
/// before its answer is sent once more on another. A connect that times out is tried again
/// until the call's deadline (as async-http-client does); a refused one fails the call.
final class HTTP1Pool: Sendable {
    private let group: any EventLoopGroup
    private let connectTimeout: TimeAmount
    private let maxPerHost: Int
    private let idleTimeout: TimeAmount
    private let maxBodyBytes: Int
    private let state = Mutex(State())

    struct HostKey: Hashable, Sendable {
        var host: String
        var port: Int
    }

    struct Idle {
        var channel: any Channel
        var since: NIODeadline
    }

    struct Host {
        var idle: [Idle] = []
        /// Connections open or being opened, idle or in use.
        var open = 0
        /// Calls with their slot, waiting for a connection.
        var waiting = CircularBuffer<PooledCall>()
    }

    private struct State {
        var hosts: [HostKey: Host] = [:]
        var closed = false
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

    /// Sends `call` when `budget` has a slot for it and answers with the whole answer. A
    /// cancelled caller leaves the waits; a call already written ends at its answer or
    /// its deadline.
    func execute(_ call: HTTP1Call, budget: ConcurrencyLimit? = nil) async throws -> HTTP1Answer {
        try Task.checkCancellation()
        let pooled = PooledCall(
            call, key: HostKey(host: call.host, port: call.port),
            id: ConcurrencyLimit.newID(), budget: budget)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                pooled.await(continuation)
                guard let budget else { return start(pooled) }
                let now = budget.acquire(id: pooled.id) { [self] granted in
                    if granted { start(pooled) } else { pooled.complete(.failure(CancellationError())) }
                }
                if now { start(pooled) }
            }
        } onCancel: {
            cancel(pooled)
        }
    }

    /// Closes the idle connections and fails the calls waiting for one; connections in use
    /// close when their calls end, and later calls fail.
    func shutdown() async {
        let (idle, waiting) = state.withLock { state in
            state.closed = true
            var idle: [any Channel] = []
            var waiting: [PooledCall] = []
            for (key, host) in state.hosts {
                idle += host.idle.map(\.channel)
                waiting += host.waiting
                state.hosts[key]?.idle = []
                state.hosts[key]?.waiting = []
                state.hosts[key]?.open -= host.idle.count
            }
            return (idle, waiting)
        }
        for call in waiting { end(call, .failure(HTTP1Failure.closed)) }
        for channel in idle { try? await channel.close() }
    }

    // MARK: a call's way to a connection

    enum Placement {
        case send(any Channel)
        case connect
        case wait
        case fail(HTTP1Failure)
    }

    /// A call that has just got its slot: admitted (a circuit may refuse it), its deadline
    /// set, and placed.
    private func start(_ call: PooledCall) {
        do {
            try call.call.admit?()
        } catch {
            return end(call, .failure(error))
        }
        place(call, deadline: call.start())
    }

    /// A call with its slot: onto an idle connection, a new one, or into its host's line.
    private func place(_ call: PooledCall, deadline: NIODeadline) {
        var stale: [any Channel] = []
        let placement: Placement = state.withLock { state in
            guard !state.closed else { return .fail(.closed) }
            return state.hosts[call.key, default: Host()].place(
                call, now: .now(), idleTimeout: idleTimeout, maxPerHost: maxPerHost, stale: &stale)
        }
        for channel in stale { channel.close(promise: nil) }
        switch placement {
        case .send(let channel): send(call, on: channel, reused: true)
        case .connect: connect(call)
        case .fail(let failure): end(call, .failure(failure))
        case .wait:
            call.arm(
                group.next().scheduleTask(deadline: deadline) { [self] in
                    let removed = state.withLock { $0.hosts[call.key]?.waiting.remove(id: call.id) ?? false }
                    if removed { end(call, .failure(HTTP1Failure.timeout)) }
                })
        }
    }

    private func cancel(_ call: PooledCall) {
        if let grant = call.budget?.withdraw(id: call.id) {
            grant(false)
            return
        }
        let removed = state.withLock { $0.hosts[call.key]?.waiting.remove(id: call.id) ?? false }
        if removed { end(call, .failure(CancellationError())) }
    }

    private func connect(_ call: PooledCall) {
        let maxBodyBytes = maxBodyBytes
        let limit = min(connectTimeout, max(call.deadline - .now(), .milliseconds(1)))
        // On the caller's event loop when it is one of the group's.
        let here = MultiThreadedEventLoopGroup.currentEventLoop.flatMap { loop in
            group.makeIterator().contains { $0 === loop } ? loop : nil
        }
        ClientBootstrap(group: here ?? group)
            .connectTimeout(limit)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    // The handler writes the request's bytes and reads the answer itself
                    // (HTTP1Codec): no NIOHTTP1 encoder or decoder.
                    try channel.pipeline.syncOperations.addHandler(
                        HTTP1CallHandler(pool: self, maxBodyBytes: maxBodyBytes))
                }
            }
            .connect(host: call.key.host, port: call.key.port)
            .whenComplete { [self] result in
                switch result {
                case .success(let channel):
                    send(call, on: channel, reused: false)
                case .failure(let error):
                    let timedOut = (error as? ChannelError).map { if case .connectTimeout = $0 { true } else { false } }
                    // A server slow to accept (its backlog full under a burst) is tried again
                    // within the call's deadline, on the same place in the pool; a refusal
                    // (nobody listening) ends the call at once.
                    if timedOut == true, call.deadline - .now() > .milliseconds(50) {
                        return connect(call)
                    }
                    handOn(call.key, channel: nil, reusable: false)
                    end(call, .failure(timedOut == true ? HTTP1Failure.timeout : .connection("\(error)")))
                }
            }
    }

    private func send(_ call: PooledCall, on channel: any Channel, reused: Bool) {
        let attempt = call.sending(reused: reused)
        let written = channel.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenFailure { [self] error in
            // Closed before the request was out: the handler may never have seen it.
            finished(call, attempt: attempt, channel: channel, .failure(HTTP1Failure.connection("\(error)")), false)
        }
        channel.writeAndFlush(
            HTTP1CallHandler.Request(call: call, attempt: attempt, deadline: call.deadline), promise: written)
    }

    // MARK: a call's end

    /// An attempt's end, from its connection's event loop (or a failed write): the
    /// connection goes to the next call of its host, the slot to the next call of the
    /// budget, and the answer to the caller. Later reports of the same attempt are ignored.
    func finished(
        _ call: PooledCall, attempt: Int, channel: any Channel, _ result: Result<HTTP1Answer, any Error>,
        _ reusable: Bool
    ) {
        guard call.endAttempt(attempt) else { return }
        handOn(call.key, channel: channel, reusable: reusable)
        if case .failure(HTTP1Failure.connection) = result, call.mayRetry() {
            place(call, deadline: call.deadline)  // the server closed a reused connection: once more
            return
        }
        end(call, result)
    }

    /// A call's end: its slot to the budget's next call, then its caller resumed (a caller
    /// that returns finds its slot free).
    private func end(_ call: PooledCall, _ result: Result<HTTP1Answer, any Error>) {
        // Timed before the slot passes on: the next call's start runs inside `release`.
        var result = result
        if case .success(var answer) = result {
            answer.duration = .now() - call.startedAt
            result = .success(answer)
        }
        call.budget?.release()
        call.complete(result)
    }

    /// A connection after a call (nil: one that could not be opened): to the first call
    /// waiting for its host, or to the idle list; one not to be reused is closed and its
    /// place given to the first waiting call.
    private func handOn(_ key: HostKey, channel: (any Channel)?, reusable: Bool) {
        let now = NIODeadline.now()
        let (next, keep): (PooledCall?, Bool) = state.withLock { state in
            let keep = reusable && !state.closed && (channel?.isActive ?? false)
            return state.hosts[key, default: Host()].handOn(channel, keep: keep, now: now)
        }
        if !keep, let channel { channel.close(promise: nil) }
        guard let next else { return }
        if keep, let channel { send(next, on: channel, reused: true) } else { connect(next) }
    }
}
