import Foundation
import Hummingbird
import JSONBytes
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
            inFlightSeconds += Double(inFlight) * (elapsed / .seconds(1))
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
            let experiment = JSONWriter.escaped(Self.decoded(path[3]))
            let value = Self.isIn(user: user, share: share) ? "1" : "0"
            return #"{"experiment":"\#(experiment)","value":"\#(value)","trace_id":"ab-\#(experiment)-\#(user)"}"#
        case 1:
            return #"{"rec_id":"rec-\#(user)","rec_type":"book","material_id":"m-\#(user % 5000)"}"#
        default:
            let material = JSONWriter.escaped(Self.decoded(path[3]))
            return #"{"material_id":"\#(material)","title":"Your next read is waiting","#
                + #""body":"Picked for you from the series you read.","#
                + #""image_url":"https://img.example.com/books/\#(material).jpg"}"#
        }
    }

    /// What either server sends back: a status and a JSON body.
    struct Answer: Sendable {
        let status: Int
        let body: String

        static func json(_ status: Int, _ value: some Encodable) -> Answer {
            Answer(
                status: status,
                body: (try? JSONEncoder().encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "{}")
        }
    }

    /// The answer of a call that found its service down (the call leaves).
    func downAnswer(_ service: Int) -> Answer {
        leave(service, failed: true)
        return .json(503, ["error": "\(Self.services[service]) is down (simulated)"])
    }

    /// The answer of a call once its latency has passed (the call leaves): a simulated
    /// failure at `errorRate`, a refusal of a bad user id, or the service's body.
    func answer(
        _ service: Int, path: [Substring], query: [Substring: Substring], errorRate: Double, share: Double
    ) -> Answer {
        if errorRate > 0, Double.random(in: 0..<1) < errorRate {
            leave(service, failed: true)
            return .json(503, ["error": "simulated failure"])
        }
        guard let body = body(service: service, path: path, query: query, share: share) else {
            leave(service, failed: true)
            return .json(400, ["error": "uid must be a positive integer"])
        }
        leave(service, failed: false)
        return Answer(status: 200, body: body)
    }

    /// `POST /control`: the behaviour changed by the JSON `body` (what it does not name kept),
    /// or why not.
    func change(_ body: Data) -> Answer {
        let decoder = JSONDecoder()
        decoder.userInfo[Behaviour.base] = behaviour
        guard let changes = try? decoder.decode(Behaviour.self, from: body) else {
            return .json(400, ["error": "the body is not a behaviour (JSON)"])
        }
        if let problem = changes.problem { return .json(400, ["error": problem]) }
        behaviour = changes
        return .json(200, changes)
    }

    /// A request target's path, its segments and its query's parameters, as they come (not
    /// percent-decoded). Split as bytes: splitting the text by characters (grapheme clusters)
    /// was a tenth of the simulator's CPU.
    static func split(target: String) -> (route: Substring, path: [Substring], query: [Substring: Substring]) {
        let uri = Substring(target).utf8
        let question = uri.firstIndex(of: UInt8(ascii: "?")) ?? uri.endIndex
        let path = uri[..<question].split(separator: UInt8(ascii: "/")).map { Substring($0) }
        var query: [Substring: Substring] = [:]
        if question < uri.endIndex {
            for pair in uri[uri.index(after: question)...].split(separator: UInt8(ascii: "&")) {
                let equals = pair.firstIndex(of: UInt8(ascii: "=")) ?? pair.endIndex
                query[Substring(pair[..<equals])] =
                    equals < pair.endIndex ? Substring(pair[pair.index(after: equals)...]) : ""
            }
        }
        return (Substring(uri[..<question]), path, query)
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

    /// Which HTTP server answers: the simulator's own (a few hundred lines of SwiftNIO, each
    /// call answered on its event loop with the loop's timer) or Hummingbird's router, each
    /// call a task that sleeps its latency. `make bench push` measures the two side by side.
    public enum Server: String, Sendable, CaseIterable {
        case own
        case hummingbird
    }

    /// Serves until cancelled (or, with `signals`, until SIGTERM or SIGINT); `onListening`
    /// hears the port (useful with port 0).
    public func serve(
        host: String, port: Int, logger: Logger, server kind: Server = .own, signals: Bool = false,
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) async throws {
        let server: any Service =
            switch kind {
            case .own: SimulatorServer(simulator: self, host: host, port: port, onListening: onListening)
            case .hummingbird:
                Application(
                    router: SimulatorApplication(simulator: self).router(),
                    configuration: ApplicationConfiguration(address: .hostname(host, port: port)),
                    onServerRunning: { channel in await onListening(channel.localAddress?.port ?? port) },
                    logger: logger)
            }
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
