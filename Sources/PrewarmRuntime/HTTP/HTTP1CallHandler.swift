import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// The only handler of a pooled connection: writes one call at a time and reports its end
/// to the pool: the whole answer, or a failure when the deadline passes (the connection is
/// then closed: its state is unknown) or the connection ends first.
final class HTTP1CallHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = Request
    typealias OutboundOut = ByteBuffer

    struct Request: Sendable {
        var call: PooledCall
        var attempt: Int
        var deadline: NIODeadline
    }

    private let pool: HTTP1Pool
    private var reader: HTTP1AnswerReader
    private var current: Request?
    /// One deadline check for the connection, not one per call: a call's end leaves it
    /// armed, and when it fires it ends a call past its deadline or waits for the call's.
    /// (A timer scheduled and cancelled per call was a twelfth of a pod's CPU.)
    private var timer: Scheduled<Void>?
    private var timerDeadline: NIODeadline?

    init(pool: HTTP1Pool, maxBodyBytes: Int) {
        self.pool = pool
        reader = HTTP1AnswerReader(maxBodyBytes: maxBodyBytes)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        if current != nil {
            finish(.failure(HTTP1Failure.connection("a second call on a busy connection")), reusable: false, context)
            context.close(promise: nil)
        }
        current = request
        let call = request.call.call
        reader.start(headOnly: call.method == .HEAD)
        armTimer(request.deadline, context)
        var bytes = context.channel.allocator.buffer(
            capacity: 96 + call.target.utf8.count + call.headers.count * 48 + (call.body?.readableBytes ?? 0))
        HTTP1Codec.request(call, into: &bytes)
        context.write(wrapOutboundOut(bytes), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var part = unwrapInboundIn(data)
        guard current != nil else {
            // Bytes nobody asked for (a server's time-out notice before it closes): the
            // connection is not to be trusted again.
            context.close(promise: nil)
            return
        }
        reader.feed(&part)
        report(reader.next(), context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if current != nil { report(reader.closed(), context) }
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    /// Makes sure a check comes by `deadline` (one due earlier re-arms itself for it).
    private func armTimer(_ deadline: NIODeadline, _ context: ChannelHandlerContext) {
        if let armed = timerDeadline, armed <= deadline { return }
        timer?.cancel()
        timerDeadline = deadline
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            timer = nil
            timerDeadline = nil
            guard let request = current else { return }
            if request.deadline <= .now() {
                finish(.failure(HTTP1Failure.timeout), reusable: false, context)
                context.close(promise: nil)
            } else {
                armTimer(request.deadline, context)
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        finish(.failure(HTTP1Failure.connection("\(error)")), reusable: false, context)
        context.close(promise: nil)
    }

    private func report(_ outcome: HTTP1AnswerReader.Outcome, _ context: ChannelHandlerContext) {
        switch outcome {
        case .needMore: return
        case .answer(let status, let body, let keepAlive):
            // Bytes after the answer were not asked for: the connection is not reused.
            finish(
                .success(HTTP1Answer(status: status, body: body)), reusable: keepAlive && reader.leftover == 0, context)
        case .malformed(let problem):
            finish(.failure(HTTP1Failure.connection(problem)), reusable: false, context)
            context.close(promise: nil)
        case .tooLarge:
            finish(.failure(HTTP1Failure.tooLarge), reusable: false, context)
            context.close(promise: nil)
        }
    }

    private func finish(_ result: Result<HTTP1Answer, any Error>, reusable: Bool, _ context: ChannelHandlerContext) {
        guard let request = current else { return }
        current = nil
        pool.finished(request.call, attempt: request.attempt, channel: context.channel, result, reusable)
    }
}
