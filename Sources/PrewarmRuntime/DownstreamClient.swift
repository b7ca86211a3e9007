import AsyncHTTPClient
import CoreMetrics
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// A downstream HTTP call that did not give a 2xx answer. 5xx, 429, time-outs and connection
/// failures are transient (the caller retries or pauses); any other 4xx is permanent (the
/// request itself is wrong and will not get better).
public struct DownstreamError: ClassifiedError, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        case status(Int)
        case timeout
        case connection
    }

    public let service: String
    public let kind: Kind
    /// The start of the answer's body, for the log (bounded).
    public let detail: String

    public init(service: String, kind: Kind, detail: String = "") {
        self.service = service
        self.kind = kind
        self.detail = detail
    }

    public var failureKind: FailureKind {
        switch kind {
        case .status(let code): return code >= 500 || code == 429 || code == 408 ? .transient : .permanent
        case .timeout, .connection: return .transient
        }
    }

    public var description: String {
        switch kind {
        case .status(let code): return "\(service) answered HTTP \(code)" + (detail.isEmpty ? "" : ": \(detail)")
        case .timeout: return "\(service) did not answer in time"
        case .connection: return "\(service) could not be reached: \(detail)"
        }
    }
}

/// A 2xx answer.
public struct DownstreamResponse: Sendable {
    public let status: Int
    public let body: [UInt8]

    public func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try JSONDecoder().decode(type, from: Data(body))
    }
}

/// The runtime's HTTP client: one per process, with a connect and a per-call time-out, and
/// failures mapped to the runtime's transient and permanent kinds. `http://` calls go
/// through the runtime's own keep-alive pool (`HTTP1Pool`: a third of async-http-client's
/// CPU per call, which is what bounds a pod making thousands of calls a second);
/// `https://` calls through async-http-client.
public final class DownstreamClient: Sendable {
    public let callTimeout: Duration
    private let plain: HTTP1Pool
    private let client: HTTPClient
    private let metricsFactory: any MetricsFactory
    private let perService = Mutex<[String: ServiceMetrics]>([:])

    /// Every call is counted in `prewarm_downstream_calls_total{service,outcome}` (outcome
    /// `2xx`, `4xx`, `5xx`..., `timeout` or `connection`; a call its `admit` refuses is not
    /// one), and an answered call's time, from its slot to its answer, goes to
    /// `prewarm_downstream_call_duration_seconds{service}`.
    public init(
        connectTimeout: Duration, callTimeout: Duration, maxConnectionsPerHost: Int,
        metricsFactory: any MetricsFactory = NOOPMetricsHandler.instance
    ) {
        self.metricsFactory = metricsFactory
        self.callTimeout = callTimeout
        plain = HTTP1Pool(
            connectTimeout: .milliseconds(Int64(connectTimeout.milliseconds)), maxPerHost: maxConnectionsPerHost)
        var configuration = HTTPClient.Configuration(
            timeout: HTTPClient.Configuration.Timeout(connect: .milliseconds(Int64(connectTimeout.milliseconds))),
            connectionPool: HTTPClient.Configuration.ConnectionPool(
                idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: maxConnectionsPerHost))
        configuration.httpVersion = .http1Only
        // No tracer: building a span's attributes for every call costs more than the call's
        // own bookkeeping, and prewarm exports metrics, not traces.
        configuration.tracing.tracer = nil
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    /// A GET. With `budget`, the call waits for one of its slots first (the caller's cap on
    /// calls in flight); the time-out runs from the slot. `admit`, run when the call has its
    /// slot and before anything is sent, may refuse it by throwing (a circuit breaker).
    public func get(
        _ url: URL, service: String, timeout: Duration? = nil, budget: ConcurrencyLimit? = nil,
        admit: (@Sendable () throws -> Void)? = nil
    ) async throws -> DownstreamResponse {
        try await get(url.absoluteString, service: service, timeout: timeout, budget: budget, admit: admit)
    }

    /// A GET of a URL already in text (built by the caller, its values percent-encoded).
    public func get(
        _ url: String, service: String, timeout: Duration? = nil, budget: ConcurrencyLimit? = nil,
        admit: (@Sendable () throws -> Void)? = nil
    ) async throws -> DownstreamResponse {
        try await send(
            .GET, url, headers: [], body: nil, service: service, timeout: timeout, budget: budget, admit: admit)
    }

    public func post(
        _ url: URL, json body: [UInt8], service: String, headers: [(String, String)] = [], timeout: Duration? = nil,
        budget: ConcurrencyLimit? = nil, admit: (@Sendable () throws -> Void)? = nil
    ) async throws -> DownstreamResponse {
        try await send(
            .POST, url.absoluteString, headers: [("Content-Type", "application/json")] + headers,
            body: ByteBuffer(bytes: body), service: service, timeout: timeout, budget: budget, admit: admit)
    }

    private func send(
        _ method: HTTPMethod, _ url: String, headers: [(String, String)], body: ByteBuffer?, service: String,
        timeout: Duration?, budget: ConcurrencyLimit?, admit: (@Sendable () throws -> Void)?
    ) async throws -> DownstreamResponse {
        let status: Int
        var answer: ByteBuffer
        do {
            (status, answer) = try await exchange(
                method, url, headers: headers, body: body, service: service, timeout: timeout, budget: budget,
                admit: admit)
        } catch let refused as Refused {
            // Refused before it was sent (an open circuit): not a call.
            throw DownstreamError(service: service, kind: .connection, detail: "\(refused.error)")
        } catch let error as DownstreamError {
            count(service, error.kind == .timeout ? "timeout" : "connection")
            throw error
        }
        count(service, "\(status / 100)xx")
        let bytes = answer.readBytes(length: answer.readableBytes) ?? []
        guard (200..<300).contains(status) else {
            throw DownstreamError(
                service: service, kind: .status(status), detail: String(decoding: bytes.prefix(200), as: UTF8.self))
        }
        return DownstreamResponse(status: status, body: bytes)
    }

    /// What `admit` threw, passed through `exchange` untouched.
    private struct Refused: Error {
        let error: any Error
    }

    private func count(_ service: String, _ outcome: String) {
        let metrics = metrics(of: service)
        (metrics.calls[outcome] ?? metrics.counter(outcome)).increment()
    }

    /// A service's metric handles, made once: made per call through the factory they cost
    /// several microseconds of a call's CPU.
    private func metrics(of service: String) -> ServiceMetrics {
        if let known = perService.withLock({ $0[service] }) { return known }
        let made = ServiceMetrics(service: service, factory: metricsFactory)
        return perService.withLock { known in
            if let first = known[service] { return first }
            known[service] = made
            return made
        }
    }

    private final class ServiceMetrics: Sendable {
        let service: String
        let factory: any MetricsFactory
        let duration: CoreMetrics.Timer
        /// The usual outcomes, at 0 from the first call.
        let calls: [String: Counter]

        init(service: String, factory: any MetricsFactory) {
            self.service = service
            self.factory = factory
            duration = CoreMetrics.Timer(
                label: "prewarm_downstream_call_duration_seconds", dimensions: [("service", service)], factory: factory)
            calls = Dictionary(
                uniqueKeysWithValues: ["2xx", "3xx", "4xx", "5xx", "timeout", "connection"].map {
                    ($0, Self.counter(service, $0, factory))
                })
        }

        func counter(_ outcome: String) -> Counter { Self.counter(service, outcome, factory) }

        private static func counter(_ service: String, _ outcome: String, _ factory: any MetricsFactory) -> Counter {
            Counter(
                label: "prewarm_downstream_calls_total", dimensions: [("service", service), ("outcome", outcome)],
                factory: factory)
        }
    }

    /// The call's status and body; a failure without an answer as a `DownstreamError`
    /// (cancellation passes through). An answered call's time is recorded.
    private func exchange(
        _ method: HTTPMethod, _ url: String, headers: [(String, String)], body: ByteBuffer?, service: String,
        timeout: Duration?, budget: ConcurrencyLimit?, admit: (@Sendable () throws -> Void)?
    ) async throws -> (Int, ByteBuffer) {
        let limit = TimeAmount.milliseconds(Int64((timeout ?? callTimeout).milliseconds))
        let admit = admit.map { admit in
            { @Sendable () throws -> Void in
                do { try admit() } catch { throw Refused(error: error) }
            }
        }
        let status: Int
        let answer: ByteBuffer
        let duration: TimeAmount
        do {
            if let plainURL = PlainHTTPURL(url) {
                let reply = try await plain.execute(
                    HTTP1Call(
                        method: method, host: plainURL.host, port: plainURL.port, target: plainURL.target,
                        headers: headers, body: body, timeout: limit, admit: admit),
                    budget: budget)
                (status, answer, duration) = (reply.status, reply.body, reply.duration)
            } else {
                var request = HTTPClientRequest(url: url)
                request.method = method
                for (name, value) in headers { request.headers.add(name: name, value: value) }
                if let body { request.body = .bytes(body) }
                func call() async throws -> (Int, ByteBuffer, TimeAmount) {
                    try admit?()
                    let started = NIODeadline.now()
                    let response = try await client.execute(request, timeout: limit)
                    let body = try await response.body.collect(upTo: 8 << 20)
                    return (Int(response.status.code), body, .now() - started)
                }
                if let budget {
                    (status, answer, duration) = try await budget.run { try await call() }
                } else {
                    (status, answer, duration) = try await call()
                }
            }
        } catch let error as HTTP1Failure {
            switch error {
            case .timeout: throw DownstreamError(service: service, kind: .timeout)
            case .connection(let detail): throw DownstreamError(service: service, kind: .connection, detail: detail)
            case .tooLarge: throw DownstreamError(service: service, kind: .connection, detail: "answer over 8 MiB")
            case .closed: throw DownstreamError(service: service, kind: .connection, detail: "client shut down")
            }
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout {
            throw DownstreamError(service: service, kind: .timeout)
        } catch let error as HTTPClientError where error == .connectTimeout {
            throw DownstreamError(service: service, kind: .timeout)
        } catch is CancellationError {
            throw CancellationError()
        } catch let refused as Refused {
            throw refused
        } catch let error as DownstreamError {
            throw error
        } catch {
            throw DownstreamError(service: service, kind: .connection, detail: "\(error)")
        }
        metrics(of: service).duration.recordNanoseconds(duration.nanoseconds)
        return (status, answer)
    }

    /// Closes the pooled connections; later calls fail.
    public func shutdown() async {
        await plain.shutdown()
        try? await client.shutdown()
    }
}

/// An `http://host[:port]/target` URL in text, taken apart byte by byte without
/// Foundation's parser (nil for anything else: https, user info, no host, a bad port).
/// Parsed on every call: it costs about as much as copying the URL.
struct PlainHTTPURL: Equatable {
    var host: String
    var port: Int
    var target: String

    init?(_ url: String) {
        var url = url
        guard let parsed = url.withUTF8({ Self.parse($0) }) else { return nil }
        self = parsed
    }

    private static func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> PlainHTTPURL? {
        let scheme: [UInt8] = Array("http://".utf8)
        guard bytes.count > scheme.count else { return nil }
        for index in 0..<scheme.count where bytes[index] | 0x20 != scheme[index] | 0x20 { return nil }
        let start = scheme.count
        var end = start
        while end < bytes.count, bytes[end] != UInt8(ascii: "/"), bytes[end] != UInt8(ascii: "?"),
            bytes[end] != UInt8(ascii: "#")
        {
            if bytes[end] == UInt8(ascii: "@") { return nil }
            end += 1
        }
        guard end > start else { return nil }
        // The authority: host, [IPv6], then an optional :port.
        var hostRange = start..<end
        var portStart: Int?
        if bytes[start] == UInt8(ascii: "[") {
            guard let close = (start..<end).first(where: { bytes[$0] == UInt8(ascii: "]") }) else { return nil }
            hostRange = (start + 1)..<close
            if close + 1 < end {
                guard bytes[close + 1] == UInt8(ascii: ":") else { return nil }
                portStart = close + 2
            }
        } else if let colon = (start..<end).last(where: { bytes[$0] == UInt8(ascii: ":") }) {
            hostRange = start..<colon
            portStart = colon + 1
        }
        var port = 80
        if let portStart {
            guard portStart < end, end - portStart <= 5 else { return nil }
            port = 0
            for index in portStart..<end {
                let digit = Int(bytes[index]) - Int(UInt8(ascii: "0"))
                guard (0...9).contains(digit) else { return nil }
                port = port * 10 + digit
            }
            guard (1...65535).contains(port) else { return nil }
        }
        guard !hostRange.isEmpty else { return nil }
        var targetEnd = end
        while targetEnd < bytes.count, bytes[targetEnd] != UInt8(ascii: "#") { targetEnd += 1 }
        var target = String(decoding: UnsafeBufferPointer(rebasing: bytes[end..<targetEnd]), as: UTF8.self)
        if target.utf8.first != UInt8(ascii: "/") { target = "/" + target }
        return PlainHTTPURL(
            host: String(decoding: UnsafeBufferPointer(rebasing: bytes[hostRange]), as: UTF8.self), port: port,
            target: target)
    }

    init(host: String, port: Int, target: String) {
        self.host = host
        self.port = port
        self.target = target
    }
}

/// `value` percent-encoded for a query value or a path segment: every byte but RFC 3986's
/// unreserved characters as `%XX`. The value itself when it needs none (the usual case:
/// ids), without a copy.
public func percentEncoded(_ value: String) -> String {
    func unreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
            UInt8(ascii: "~"):
            return true
        default: return false
        }
    }
    guard !value.utf8.allSatisfy(unreserved) else { return value }
    let hex = Array("0123456789ABCDEF".utf8)
    var encoded: [UInt8] = []
    encoded.reserveCapacity(value.utf8.count * 3)
    for byte in value.utf8 {
        if unreserved(byte) {
            encoded.append(byte)
        } else {
            encoded += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]]
        }
    }
    return String(decoding: encoded, as: UTF8.self)
}
