import AsyncHTTPClient
import CoreMetrics
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// The runtime's HTTP client: one per process, with a connect and a per-call time-out, and
/// failures mapped to the runtime's transient and permanent kinds. `http://` calls go
/// through the runtime's own keep-alive pool (`HTTP1Pool`), `https://` calls through
/// async-http-client. Why the pool exists, with its figures, is in README's benchmark section.
public final class DownstreamClient: Sendable {
    public let callTimeout: Duration
    private let plain: HTTP1Pool
    private let client: HTTPClient
    /// `http://` calls through `HTTP1Pool` (true) or async-http-client, as `https://` ones.
    public let ownPool: Bool
    /// Each service's metric handles, made once: made per call through the factory they cost
    /// several microseconds of a call's CPU.
    private let perService: MetricHandles<String, ServiceMetrics>

    /// Every call is counted in `prewarm_downstream_calls_total{service,outcome}` (outcome
    /// `2xx`, `4xx`, `5xx`..., `timeout` or `connection`; a call its `admit` refuses is not
    /// one), and an answered call's time, from its slot to its answer, goes to
    /// `prewarm_downstream_call_duration_seconds{service}`.
    public init(
        connectTimeout: Duration, callTimeout: Duration, maxConnectionsPerHost: Int,
        metricsFactory: any MetricsFactory = NOOPMetricsHandler.instance, ownPool: Bool = true
    ) {
        self.ownPool = ownPool
        self.perService = MetricHandles { ServiceMetrics(service: $0, factory: metricsFactory) }
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
        let metrics = perService[service]
        (metrics.calls[outcome] ?? metrics.counter(outcome)).increment()
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
            if ownPool, let plainURL = PlainHTTPURL(url) {
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
        perService[service].duration.recordNanoseconds(duration.nanoseconds)
        return (status, answer)
    }

    /// Closes the pooled connections; later calls fail.
    public func shutdown() async {
        await plain.shutdown()
        try? await client.shutdown()
    }
}
