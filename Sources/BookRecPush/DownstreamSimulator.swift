import Foundation
import Hummingbird
import Logging
import Synchronization

/// A stand-in for the three downstream services (`prewarmctl simulate-downstream`), for
/// the demo, the tests and the benchmark, over real HTTP on one port:
/// - `GET /ab/v1/experiments/{experiment}/assignment?uid=&project=` ->
///   `{"experiment", "value" ("1" in, "0" out), "trace_id"}`;
/// - `GET /rec/v1/recommendations?uid=&project=&scene=&trace_id=` ->
///   `{"rec_id", "rec_type", "material_id"}`;
/// - `GET /material/v1/materials/{materialId}?uid=&rec_id=&rec_type=` ->
///   `{"material_id", "title", "body", "image_url"}`;
/// - `GET /stats`: calls, errors, calls in flight now and at most, per service and in all;
///   `POST /stats/reset`;
/// - `POST /control`: `{"error_rate": 0.2, "down": ["rec"], "latency": "10ms", ...}` changes
///   the behaviour while it runs (a service "down" answers 503 at once).
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

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            let defaults = Behaviour()
            latency = try container.decodeIfPresent(String.self, forKey: .latency) ?? defaults.latency
            serviceLatency = try container.decodeIfPresent([String: String].self, forKey: .serviceLatency) ?? [:]
            errorRate = try container.decodeIfPresent(Double.self, forKey: .errorRate) ?? defaults.errorRate
            experimentShare =
                try container.decodeIfPresent(Double.self, forKey: .experimentShare) ?? defaults.experimentShare
            down = try container.decodeIfPresent([String].self, forKey: .down) ?? []
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

        enum CodingKeys: String, CodingKey {
            case calls, errors
            case inFlight = "in_flight"
            case maxInFlight = "max_in_flight"
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
        }
    }

    /// Whether the user is in the experiment: a stable share by user id.
    public static func isIn(user: Int64, share: Double) -> Bool {
        let spread = (UInt64(bitPattern: user) &* 0x9E37_79B9_7F4A_7C15) >> 40
        return Double(spread % 10_000) < share * 10_000
    }

    private func enter(_ service: Int) -> (latency: Latency, down: Bool, errorRate: Double, share: Double) {
        state.withLock { state in
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

    private func leave(_ service: Int, failed: Bool) {
        state.withLock { state in
            state.services[service].inFlight -= 1
            state.total.inFlight -= 1
            if failed {
                state.services[service].errors += 1
                state.total.errors += 1
            }
        }
    }

    /// One call: its latency, then 503 at the error rate, else the body `answer` writes (nil:
    /// a bad request). Bodies are written by hand: the simulator must cost little beside the
    /// client it measures.
    private func answer(_ service: Int, _ answer: (_ share: Double) -> String?) async -> Response {
        let plan = enter(service)
        var failed = true
        defer { leave(service, failed: failed) }
        if plan.down {
            return Self.json(.serviceUnavailable, ["error": "\(Self.services[service]) is down (simulated)"])
        }
        try? await Task.sleep(for: plan.latency.sample())
        if plan.errorRate > 0, Double.random(in: 0..<1) < plan.errorRate {
            return Self.json(.serviceUnavailable, ["error": "simulated failure"])
        }
        guard let body = answer(plan.share) else {
            return Self.json(.badRequest, ["error": "uid must be a positive integer"])
        }
        failed = false
        return Response(
            status: .ok, headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }

    /// `text` as a JSON string's content.
    static func escaped(_ text: some StringProtocol) -> String {
        guard text.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) else {
            return String(text)
        }
        var result = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case _ where scalar.value < 0x20: result += String(format: "\\u%04x", scalar.value)
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result
    }

    static func user(_ request: Request) -> Int64? {
        guard let user = request.uri.queryParameters.get("uid").flatMap({ Int64($0) }), user > 0 else { return nil }
        return user
    }

    public func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.get("/ab/v1/experiments/:experiment/assignment") { request, context -> Response in
            let experiment = Self.escaped(context.parameters.get("experiment") ?? "")
            return await self.answer(0) { share in
                guard let user = Self.user(request) else { return nil }
                let value = Self.isIn(user: user, share: share) ? "1" : "0"
                return #"{"experiment":"\#(experiment)","value":"\#(value)","trace_id":"ab-\#(experiment)-\#(user)"}"#
            }
        }
        router.get("/rec/v1/recommendations") { request, _ -> Response in
            await self.answer(1) { _ in
                guard let user = Self.user(request) else { return nil }
                return #"{"rec_id":"rec-\#(user)","rec_type":"book","material_id":"m-\#(user % 5000)"}"#
            }
        }
        router.get("/material/v1/materials/:material") { request, context -> Response in
            let material = Self.escaped(context.parameters.get("material") ?? "")
            return await self.answer(2) { _ in
                guard Self.user(request) != nil else { return nil }
                return #"{"material_id":"\#(material)","title":"Your next read is waiting","#
                    + #""body":"Picked for you from the series you read.","#
                    + #""image_url":"https://img.example.com/books/\#(material).jpg"}"#
            }
        }
        router.get("/stats") { _, _ -> Response in Self.json(.ok, self.stats) }
        router.post("/stats/reset") { _, _ -> Response in
            self.resetStats()
            return Self.json(.ok, self.stats)
        }
        router.post("/control") { request, context -> Response in
            let changes = try await request.decode(as: Behaviour.self, context: context)
            if let problem = changes.problem { return Self.json(.badRequest, ["error": problem]) }
            self.behaviour = changes
            return Self.json(.ok, changes)
        }
        router.get("/control") { _, _ -> Response in Self.json(.ok, self.behaviour) }
        return router
    }

    static func json(_ status: HTTPResponse.Status, _ value: some Encodable) -> Response {
        let body = (try? JSONEncoder().encode(value)) ?? Data()
        return Response(
            status: status, headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }

    /// Serves until cancelled (or, with `signals`, until SIGTERM or SIGINT); `onListening`
    /// hears the port (useful with port 0).
    public func serve(
        host: String, port: Int, logger: Logger, signals: Bool = false,
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) async throws {
        let application = Application(
            router: router(),
            configuration: ApplicationConfiguration(address: .hostname(host, port: port), serverName: "simulator"),
            onServerRunning: { channel in await onListening(channel.localAddress?.port ?? port) },
            logger: logger)
        if signals {
            try await application.runService(gracefulShutdownSignals: [.sigterm, .sigint])
        } else {
            try await application.run()
        }
    }
}
