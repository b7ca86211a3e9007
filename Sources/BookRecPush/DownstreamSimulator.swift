import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import Synchronization

/// A stand-in for the three downstream services (`prewarmctl simulate-downstream`), for
/// the demo, the tests and the benchmark, over real HTTP on one port:
/// - `GET /ab/v1/experiments/{experiment}/assignment?uid=&project=` ->
///   `{"experiment", "value" ("1" in, "0" out), "trace_id"}`;
/// - `GET /rec/v1/recommendations?uid=&project=&scene=&trace_id=` ->
///   `{"rec_id", "rec_type", "material_id"}`;
/// - `GET /material/v1/materials/{materialId}?uid=&rec_id=&rec_type=` ->
///   `{"material_id", "title", "body", "image_url"}`;
/// - `GET /stats`: calls, errors, calls in flight now and at most, and their time in flight
///   summed (`in_flight_seconds`), per service and in all;
///   `POST /stats/reset`;
/// - `POST /control`: `{"error_rate": 0.2, "down": ["rec"], "latency": "10ms", ...}` changes
///   the behaviour while it runs, only in what it names (a service "down" answers 503 at once).
///
/// Each call waits its latency, then fails with 503 at the error rate. Whether a user is in
/// the experiment depends on the user id only (a stable share), so runs agree.
public final class DownstreamSimulator: Sendable {
    public static let services = ["ab", "rec", "material"]

    /// A call's latency: fixed, uniform between two bounds, or exponential around a mean.
    public enum Latency: Sendable, Equatable, CustomStringConvertible {
        case fixed(Duration)
        case uniform(Duration, Duration)
        case exponential(mean: Duration)

        /// `10ms`, `uniform:5ms-15ms`, `exp:10ms` (units ms or s).
        public init?(parsing text: String) {
            func duration(_ text: Substring) -> Duration? {
                if text.hasSuffix("ms"), let value = Double(text.dropLast(2)), value >= 0 {
                    return .microseconds(Int64(value * 1000))
                }
                if text.hasSuffix("s"), let value = Double(text.dropLast()), value >= 0 {
                    return .microseconds(Int64(value * 1_000_000))
                }
                return nil
            }
            if text.hasPrefix("uniform:") {
                let bounds = text.dropFirst("uniform:".count).split(separator: "-")
                guard bounds.count == 2, let low = duration(bounds[0]), let high = duration(bounds[1]), low <= high
                else { return nil }
                self = .uniform(low, high)
            } else if text.hasPrefix("exp:") {
                guard let mean = duration(text.dropFirst(4)) else { return nil }
                self = .exponential(mean: mean)
            } else {
                guard let value = duration(Substring(text)) else { return nil }
                self = .fixed(value)
            }
        }

        public var description: String {
            func ms(_ duration: Duration) -> String {
                let value = Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
                return String(format: "%gms", value)
            }
            switch self {
            case .fixed(let value): return ms(value)
            case .uniform(let low, let high): return "uniform:\(ms(low))-\(ms(high))"
            case .exponential(let mean): return "exp:\(ms(mean))"
            }
        }

        func sample() -> Duration {
            switch self {
            case .fixed(let value): return value
            case .uniform(let low, let high):
                return low + (high - low) * Double.random(in: 0...1)
            case .exponential(let mean):
                return mean * -log(1 - Double.random(in: 0..<1))
            }
        }
    }

    public struct Behaviour: Sendable, Codable, Equatable {
        /// Per service (`ab`, `rec`, `material`); a service not named uses `latency`.
        public var latency: String = "10ms"
        public var serviceLatency: [String: String] = [:]
        public var errorRate: Double = 0
        public var experimentShare: Double = 0.8
        public var down: [String] = []

        enum CodingKeys: String, CodingKey {
            case latency, down
            case serviceLatency = "service_latency"
            case errorRate = "error_rate"
            case experimentShare = "experiment_share"
        }

        public init() {}

        /// The key of `JSONDecoder.userInfo` naming the behaviour a change applies to: what the
        /// JSON leaves out keeps its value there (`POST /control` changes only what it names).
        public static let base = CodingUserInfoKey(rawValue: "prewarm.simulator.base")!

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            let defaults = decoder.userInfo[Self.base] as? Behaviour ?? Behaviour()
            latency = try container.decodeIfPresent(String.self, forKey: .latency) ?? defaults.latency
            serviceLatency =
                try container.decodeIfPresent([String: String].self, forKey: .serviceLatency) ?? defaults.serviceLatency
            errorRate = try container.decodeIfPresent(Double.self, forKey: .errorRate) ?? defaults.errorRate
            experimentShare =
                try container.decodeIfPresent(Double.self, forKey: .experimentShare) ?? defaults.experimentShare
            down = try container.decodeIfPresent([String].self, forKey: .down) ?? defaults.down
        }

        /// The first problem with these values, if any.
        public var problem: String? {
            for text in [latency] + serviceLatency.values where Latency(parsing: text) == nil {
                return "latency '\(text)' is not one of 10ms, uniform:5ms-15ms, exp:10ms"
            }
            if let name = (Array(serviceLatency.keys) + down).first(where: {
                !DownstreamSimulator.services.contains($0)
            }) {
                return "no service '\(name)'; the services are ab, rec, material"
            }
            if !(0...1).contains(errorRate) { return "error_rate \(errorRate) is not from 0 to 1" }
            if !(0...1).contains(experimentShare) { return "experiment_share \(experimentShare) is not from 0 to 1" }
            return nil
        }

        func latency(of service: String) -> Latency {
            Latency(parsing: serviceLatency[service] ?? latency) ?? .fixed(.zero)
        }
    }

    public struct ServiceStats: Sendable, Codable, Equatable {
        public var calls = 0
        public var errors = 0
        public var inFlight = 0
        public var maxInFlight = 0
        /// The calls' time in flight, summed: over a stretch of time, divided by its length,
        /// the mean number in flight; divided by `calls`, a call's mean time here.
        public var inFlightSeconds = 0.0

        enum CodingKeys: String, CodingKey {
            case calls, errors
            case inFlight = "in_flight"
            case maxInFlight = "max_in_flight"
            case inFlightSeconds = "in_flight_seconds"
        }

        /// Adds `elapsed` at the present count, before the count changes.
        mutating func accrue(_ elapsed: Duration) {
            inFlightSeconds += Double(inFlight) * elapsed.seconds
        }
    }

    public struct Stats: Sendable, Codable, Equatable {
        public var services: [String: ServiceStats] = [:]
        /// All services together.
        public var total = ServiceStats()
    }

    /// What a call needs of the behaviour, parsed once when it is set (the hot path reads it
    /// under the lock at every call).
    struct Plan {
        var latency: [Latency]
        var down: [Bool]
        var errorRate: Double
        var experimentShare: Double

        init(_ behaviour: Behaviour) {
            latency = DownstreamSimulator.services.map { behaviour.latency(of: $0) }
            down = DownstreamSimulator.services.map { behaviour.down.contains($0) }
            errorRate = behaviour.errorRate
            experimentShare = behaviour.experimentShare
        }
    }

    struct State {
        var behaviour: Behaviour
        var plan: Plan
        /// Per service, in the order of `services`.
        var services = [ServiceStats](repeating: ServiceStats(), count: DownstreamSimulator.services.count)
        var total = ServiceStats()
        /// When the counts in flight last changed (or were reset).
        var changed = ContinuousClock.now

        /// Accrues every count's time in flight up to now (before a count changes).
        mutating func accrue() {
            let now = ContinuousClock.now
            for service in services.indices where services[service].inFlight > 0 {
                services[service].accrue(now - changed)
            }
            total.accrue(now - changed)
            changed = now
        }
    }

    private let state: Mutex<State>

    public init(_ behaviour: Behaviour = Behaviour()) {
        state = Mutex(State(behaviour: behaviour, plan: Plan(behaviour)))
    }

    public var behaviour: Behaviour {
        get { state.withLock { $0.behaviour } }
        set {
            state.withLock {
                $0.behaviour = newValue
                $0.plan = Plan(newValue)
            }
        }
    }

    public var stats: Stats {
        state.withLock { state in
            state.accrue()
            var stats = Stats(total: state.total)
            for (index, name) in Self.services.enumerated() where state.services[index].calls > 0 {
                stats.services[name] = state.services[index]
            }
            return stats
        }
    }

    public func resetStats() {
        state.withLock {
            $0.services = [ServiceStats](repeating: ServiceStats(), count: Self.services.count)
            $0.total = ServiceStats()
            $0.changed = .now
        }
    }

    /// Whether the user is in the experiment: a stable share by user id.
    public static func isIn(user: Int64, share: Double) -> Bool {
        let spread = (UInt64(bitPattern: user) &* 0x9E37_79B9_7F4A_7C15) >> 40
        return Double(spread % 10_000) < share * 10_000
    }

    func enter(_ service: Int) -> (latency: Latency, down: Bool, errorRate: Double, share: Double) {
        state.withLock { state in
            state.accrue()
            state.services[service].calls += 1
            state.services[service].inFlight += 1
            state.services[service].maxInFlight = max(
                state.services[service].maxInFlight, state.services[service].inFlight)
            state.total.calls += 1
            state.total.inFlight += 1
            state.total.maxInFlight = max(state.total.maxInFlight, state.total.inFlight)
            let plan = state.plan
            return (plan.latency[service], plan.down[service], plan.errorRate, plan.experimentShare)
        }
    }

    func leave(_ service: Int, failed: Bool) {
        state.withLock { state in
            state.accrue()
            state.services[service].inFlight -= 1
            state.total.inFlight -= 1
            if failed {
                state.services[service].errors += 1
                state.total.errors += 1
            }
        }
    }

    /// The body of one call (nil: a bad request), from the request's path and query.
    func body(service: Int, path: [Substring], query: [Substring: Substring], share: Double) -> String? {
        guard let user = query["uid"].flatMap({ Int64($0) }), user > 0 else { return nil }
        switch service {
        case 0:
            let experiment = FlatJSON.escaped(Self.decoded(path[3]))
            let value = Self.isIn(user: user, share: share) ? "1" : "0"
            return #"{"experiment":"\#(experiment)","value":"\#(value)","trace_id":"ab-\#(experiment)-\#(user)"}"#
        case 1:
            return #"{"rec_id":"rec-\#(user)","rec_type":"book","material_id":"m-\#(user % 5000)"}"#
        default:
            let material = FlatJSON.escaped(Self.decoded(path[3]))
            return #"{"material_id":"\#(material)","title":"Your next read is waiting","#
                + #""body":"Picked for you from the series you read.","#
                + #""image_url":"https://img.example.com/books/\#(material).jpg"}"#
        }
    }

    /// A path segment percent-decoded (as it is when it has no `%`: the usual id).
    static func decoded(_ segment: Substring) -> String {
        segment.contains("%") ? segment.removingPercentEncoding ?? String(segment) : String(segment)
    }

    /// The service a path names: 0 A/B, 1 recommendation, 2 material; nil for another path.
    static func service(of path: [Substring], method: HTTPMethod) -> Int? {
        guard method == .GET else { return nil }
        if path.count == 5, path[0] == "ab", path[1] == "v1", path[2] == "experiments", path[4] == "assignment" {
            return 0
        }
        if path.count == 3, path[0] == "rec", path[1] == "v1", path[2] == "recommendations" { return 1 }
        if path.count == 4, path[0] == "material", path[1] == "v1", path[2] == "materials" { return 2 }
        return nil
    }

    /// Serves until cancelled (or, with `signals`, until SIGTERM or SIGINT); `onListening`
    /// hears the port (useful with port 0). Plain SwiftNIO, every call answered on its event
    /// loop with the loop's own timer: the simulator must cost little beside the client it
    /// measures.
    public func serve(
        host: String, port: Int, logger: Logger, signals: Bool = false,
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) async throws {
        let server = SimulatorServer(simulator: self, host: host, port: port, onListening: onListening)
        if signals {
            let group = ServiceGroup(
                configuration: ServiceGroupConfiguration(
                    services: [server], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            try await group.run()
        } else {
            try await server.run()
        }
    }
}

/// The simulator's listening socket as a service: closed on graceful shutdown or cancellation.
struct SimulatorServer: Service {
    let simulator: DownstreamSimulator
    let host: String
    let port: Int
    let onListening: @Sendable (Int) async -> Void

    func run() async throws {
        let simulator = simulator
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(SimulatorHandler(simulator: simulator))
                }
            }
            .bind(host: host, port: port).get()
        await onListening(channel.localAddress?.port ?? port)
        // A future's `get` does not hear cancellation: closing the channel ends the wait.
        try await withTaskCancellationHandler {
            try await withGracefulShutdownHandler {
                try await channel.closeFuture.get()
            } onGracefulShutdown: {
                channel.close(promise: nil)
            }
        } onCancel: {
            channel.close(promise: nil)
        }
    }
}

/// One connection of the simulator, a minimal HTTP/1.1 server of its own: requests are read
/// from the bytes (request line, `Content-Length`, `Connection`; a chunked request body is
/// refused), answered one at a time in order (a pipelined request waits for the answer
/// before it), each after its latency by a timer of the connection's event loop (no task,
/// no hop to another thread), the answer written as one buffer. NIO's HTTP codec, its
/// pipelining and error handlers cost twice the CPU per call, on the cores the benchmark's
/// workers share with the simulator.
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
        // Split as bytes: splitting the text by characters (grapheme clusters) was a tenth
        // of the simulator's CPU.
        let uri = Substring(head.uri).utf8
        let question = uri.firstIndex(of: UInt8(ascii: "?")) ?? uri.endIndex
        let route = Substring(uri[..<question])
        let path = uri[..<question].split(separator: UInt8(ascii: "/")).map { Substring($0) }
        var query: [Substring: Substring] = [:]
        if question < uri.endIndex {
            for pair in uri[uri.index(after: question)...].split(separator: UInt8(ascii: "&")) {
                let equals = pair.firstIndex(of: UInt8(ascii: "=")) ?? pair.endIndex
                query[Substring(pair[..<equals])] =
                    equals < pair.endIndex ? Substring(pair[pair.index(after: equals)...]) : ""
            }
        }
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
            let decoder = JSONDecoder()
            decoder.userInfo[DownstreamSimulator.Behaviour.base] = simulator.behaviour
            guard
                let changes = try? decoder.decode(
                    DownstreamSimulator.Behaviour.self, from: Data(head.body.readableBytesView))
            else {
                respond(
                    .badRequest, json: ["error": "the body is not a behaviour (JSON)"], keepAlive: keepAlive,
                    context: context)
                return
            }
            if let problem = changes.problem {
                respond(.badRequest, json: ["error": problem], keepAlive: keepAlive, context: context)
                return
            }
            simulator.behaviour = changes
            respond(.ok, json: changes, keepAlive: keepAlive, context: context)
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
            simulator.leave(service, failed: true)
            respond(
                .serviceUnavailable, json: ["error": "\(DownstreamSimulator.services[service]) is down (simulated)"],
                keepAlive: keepAlive, context: context)
            return
        }
        let delay = plan.latency.sample()
        let nanoseconds = delay.components.seconds * 1_000_000_000 + delay.components.attoseconds / 1_000_000_000
        context.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(nanoseconds)) {
            if plan.errorRate > 0, Double.random(in: 0..<1) < plan.errorRate {
                self.simulator.leave(service, failed: true)
                self.respond(
                    .serviceUnavailable, json: ["error": "simulated failure"], keepAlive: keepAlive, context: context)
                return
            }
            guard let body = self.simulator.body(service: service, path: path, query: query, share: plan.share) else {
                self.simulator.leave(service, failed: true)
                self.respond(
                    .badRequest, json: ["error": "uid must be a positive integer"], keepAlive: keepAlive,
                    context: context)
                return
            }
            self.simulator.leave(service, failed: false)
            self.respond(.ok, body: body, keepAlive: keepAlive, context: context)
        }
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
