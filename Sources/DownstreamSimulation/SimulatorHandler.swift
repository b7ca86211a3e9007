import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import Synchronization

/// One connection of the simulator, a minimal HTTP/1.1 server of its own: requests are read
/// from the bytes (request line, `Content-Length`, `Connection`; a chunked request body is
/// refused), answered one at a time in order (a pipelined request waits for the answer
/// before it), each after its latency by a timer of the connection's event loop (no task,
/// no hop to another thread), the answer written as one buffer. Why the simulator has a
/// server of its own beside Hummingbird, with the figures, is in README's benchmark section.
final class SimulatorHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let simulator: DownstreamSimulator
    /// Received and not yet parsed.
    private var received = ByteBuffer()
    /// A request is being answered: the next one waits.
    private var busy = false
    private var closing = false

    static let maxHead = 64 << 10
    static let maxBody = 1 << 20

    struct Request {
        var method: HTTPMethod
        var uri: String
        var keepAlive: Bool
        var body: ByteBuffer
    }

    enum Parsed {
        case request(Request)
        case incomplete
        case refused(HTTPResponseStatus, String)
    }

    init(simulator: DownstreamSimulator) {
        self.simulator = simulator
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        received.writeBuffer(&bytes)
        next(context)
    }

    /// The next request, if one is complete and none is being answered.
    private func next(_ context: ChannelHandlerContext) {
        guard !busy, !closing else { return }
        switch Self.parse(&received) {
        case .incomplete:
            if received.readableBytes == 0 { received.clear() }
        case .refused(let status, let reason):
            busy = true
            respond(status, json: ["error": reason], keepAlive: false, context: context)
        case .request(let request):
            busy = true
            handle(request, context: context)
        }
    }

    /// One request from the front of `buffer` (consumed only when complete). Read as bytes:
    /// splitting lines and trimming strings was a quarter of the simulator's CPU.
    static func parse(_ buffer: inout ByteBuffer) -> Parsed {
        let head: Head
        switch buffer.withUnsafeReadableBytes({ Head.read($0) }) {
        case .failure(let refusal): return .refused(refusal.status, refusal.reason)
        case .success(nil):
            return buffer.readableBytes > maxHead
                ? .refused(.requestHeaderFieldsTooLarge, "request head too large") : .incomplete
        case .success(let read?): head = read
        }
        guard head.contentLength <= maxBody else { return .refused(.payloadTooLarge, "body over \(maxBody) bytes") }
        guard buffer.readableBytes >= head.length + head.contentLength else { return .incomplete }
        let method = buffer.getString(at: buffer.readerIndex, length: head.methodLength) ?? ""
        let uri = buffer.getString(at: buffer.readerIndex + head.uriStart, length: head.uriLength) ?? ""
        buffer.moveReaderIndex(forwardBy: head.length)
        let body = buffer.readSlice(length: head.contentLength) ?? ByteBuffer()
        return .request(Request(method: HTTPMethod(rawValue: method), uri: uri, keepAlive: head.keepAlive, body: body))
    }

    /// Where a request's parts lie in its head.
    struct Head {
        var methodLength = 0
        var uriStart = 0
        var uriLength = 0
        /// The head's bytes, the blank line included.
        var length = 0
        var contentLength = 0
        var keepAlive = true

        struct Refusal: Error {
            let status: HTTPResponseStatus
            let reason: String
        }

        /// nil while the head is not all there.
        static func read(_ bytes: UnsafeRawBufferPointer) -> Result<Head?, Refusal> {
            var head = Head()
            var lineStart = 0
            var line = 0
            var index = 0
            while index < bytes.count {
                guard bytes[index] == 10 else {
                    index += 1
                    continue
                }
                let lineEnd = index > lineStart && bytes[index - 1] == 13 ? index - 1 : index
                if lineEnd == lineStart {
                    guard line > 0 else { return .failure(Refusal(status: .badRequest, reason: "no request line")) }
                    head.length = index + 1
                    return .success(head)
                }
                let text = UnsafeRawBufferPointer(rebasing: bytes[lineStart..<lineEnd])
                if line == 0 {
                    guard head.requestLine(text, at: lineStart) else {
                        return .failure(Refusal(status: .badRequest, reason: "not an HTTP/1 request line"))
                    }
                } else if let refusal = head.header(text) {
                    return .failure(refusal)
                }
                line += 1
                index += 1
                lineStart = index
            }
            return .success(nil)
        }

        private mutating func requestLine(_ text: UnsafeRawBufferPointer, at offset: Int) -> Bool {
            guard let first = text.firstIndex(of: 32), let last = text.lastIndex(of: 32), first < last else {
                return false
            }
            let version = UnsafeRawBufferPointer(rebasing: text[(last + 1)...])
            guard version.count == 8, version.starts(with: "HTTP/1.".utf8) else { return false }
            keepAlive = version[7] != UInt8(ascii: "0")
            methodLength = first
            uriStart = offset + first + 1
            uriLength = last - first - 1
            return methodLength > 0 && uriLength > 0
        }

        private mutating func header(_ text: UnsafeRawBufferPointer) -> Refusal? {
            guard let colon = text.firstIndex(of: UInt8(ascii: ":")) else {
                return Refusal(status: .badRequest, reason: "a header line without a colon")
            }
            let name = UnsafeRawBufferPointer(rebasing: text[..<colon])
            var value = UnsafeRawBufferPointer(rebasing: text[(colon + 1)...])
            while let first = value.first, first == 32 || first == 9 {
                value = UnsafeRawBufferPointer(rebasing: value[1...])
            }
            if Self.named(name, "content-length") {
                var length = 0
                for byte in value where byte != 32 && byte != 9 {
                    guard byte >= 48, byte <= 57, length < 1 << 40 else {
                        return Refusal(status: .badRequest, reason: "bad Content-Length")
                    }
                    length = length * 10 + Int(byte - 48)
                }
                contentLength = length
            } else if Self.named(name, "transfer-encoding") {
                return Refusal(
                    status: .notImplemented, reason: "chunked request bodies are not accepted; send Content-Length")
            } else if Self.named(name, "connection") {
                let lowered = String(decoding: value, as: UTF8.self).lowercased()
                if lowered.contains("close") { keepAlive = false }
                if lowered.contains("keep-alive") { keepAlive = true }
            }
            return nil
        }

        /// Whether a header's name is `lowercased`, in any case.
        private static func named(_ name: UnsafeRawBufferPointer, _ lowercased: StaticString) -> Bool {
            guard name.count == lowercased.utf8CodeUnitCount else { return false }
            return lowercased.withUTF8Buffer { expected in
                zip(name, expected).allSatisfy { ($0 | 0x20) == $1 || $0 == $1 }
            }
        }
    }

    private func handle(_ head: Request, context: ChannelHandlerContext) {
        let (route, path, query) = DownstreamSimulator.split(target: head.uri)
        let keepAlive = head.keepAlive
        if let service = DownstreamSimulator.service(of: path, method: head.method) {
            call(service, path: path, query: query, keepAlive: keepAlive, context: context)
            return
        }
        switch (head.method, path.joined(separator: "/")) {
        case (.GET, "stats"):
            respond(.ok, json: simulator.stats, keepAlive: keepAlive, context: context)
        case (.POST, "stats/reset"):
            simulator.resetStats()
            respond(.ok, json: simulator.stats, keepAlive: keepAlive, context: context)
        case (.GET, "control"):
            respond(.ok, json: simulator.behaviour, keepAlive: keepAlive, context: context)
        case (.POST, "control"):
            respond(simulator.change(Data(head.body.readableBytesView)), keepAlive: keepAlive, context: context)
        default:
            respond(
                .notFound, json: ["error": "no route \(head.method) \(route)"], keepAlive: keepAlive,
                context: context)
        }
    }

    private func call(
        _ service: Int, path: [Substring], query: [Substring: Substring], keepAlive: Bool,
        context: ChannelHandlerContext
    ) {
        let plan = simulator.enter(service)
        if plan.down {
            respond(simulator.downAnswer(service), keepAlive: keepAlive, context: context)
            return
        }
        let delay = plan.latency.sample()
        let nanoseconds = delay.components.seconds * 1_000_000_000 + delay.components.attoseconds / 1_000_000_000
        context.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(nanoseconds)) {
            let answer = self.simulator.answer(
                service, path: path, query: query, errorRate: plan.errorRate, share: plan.share)
            self.respond(answer, keepAlive: keepAlive, context: context)
        }
    }

    private func respond(_ answer: DownstreamSimulator.Answer, keepAlive: Bool, context: ChannelHandlerContext) {
        respond(
            HTTPResponseStatus(statusCode: answer.status), body: answer.body, keepAlive: keepAlive, context: context)
    }

    private func respond(
        _ status: HTTPResponseStatus, json value: some Encodable, keepAlive: Bool, context: ChannelHandlerContext
    ) {
        let body = (try? JSONEncoder().encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        respond(status, body: body, keepAlive: keepAlive, context: context)
    }

    private func respond(_ status: HTTPResponseStatus, body: String, keepAlive: Bool, context: ChannelHandlerContext) {
        let length = body.utf8.count
        var buffer = context.channel.allocator.buffer(capacity: length + 128)
        buffer.writeString("HTTP/1.1 \(status.code) \(status.reasonPhrase)\r\n")
        buffer.writeString("Content-Type: application/json\r\nContent-Length: \(length)\r\n")
        if !keepAlive { buffer.writeString("Connection: close\r\n") }
        buffer.writeString("\r\n")
        buffer.writeString(body)
        if keepAlive {
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
            busy = false
            next(context)  // a request that came in behind this one
        } else {
            closing = true
            context.writeAndFlush(wrapOutboundOut(buffer)).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        }
    }
}
