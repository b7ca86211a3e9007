import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1

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

/// The runtime's HTTP client (async-http-client): one per process, with a connect and a
/// per-call time-out, and failures mapped to the runtime's transient and permanent kinds.
public final class DownstreamClient: Sendable {
    public let callTimeout: Duration
    private let client: HTTPClient

    public init(connectTimeout: Duration, callTimeout: Duration, maxConnectionsPerHost: Int) {
        self.callTimeout = callTimeout
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

    public func get(_ url: URL, service: String, timeout: Duration? = nil) async throws -> DownstreamResponse {
        try await get(url.absoluteString, service: service, timeout: timeout)
    }

    /// A GET of a URL already in text (built by the caller, its values percent-encoded).
    public func get(_ url: String, service: String, timeout: Duration? = nil) async throws -> DownstreamResponse {
        try await send(HTTPClientRequest(url: url), service: service, timeout: timeout)
    }

    public func post(
        _ url: URL, json body: [UInt8], service: String, headers: [(String, String)] = [], timeout: Duration? = nil
    ) async throws -> DownstreamResponse {
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.body = .bytes(ByteBuffer(bytes: body))
        return try await send(request, service: service, timeout: timeout)
    }

    private func send(_ request: HTTPClientRequest, service: String, timeout: Duration?) async throws
        -> DownstreamResponse
    {
        let limit = timeout ?? callTimeout
        let response: HTTPClientResponse
        var body: ByteBuffer
        do {
            response = try await client.execute(request, timeout: .milliseconds(Int64(limit.milliseconds)))
            body = try await response.body.collect(upTo: 8 << 20)
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout {
            throw DownstreamError(service: service, kind: .timeout)
        } catch let error as HTTPClientError where error == .connectTimeout {
            throw DownstreamError(service: service, kind: .timeout)
        } catch is CancellationError {
            throw CancellationError()
        } catch let error as DownstreamError {
            throw error
        } catch {
            throw DownstreamError(service: service, kind: .connection, detail: "\(error)")
        }
        let bytes = body.readBytes(length: body.readableBytes) ?? []
        guard (200..<300).contains(Int(response.status.code)) else {
            throw DownstreamError(
                service: service, kind: .status(Int(response.status.code)),
                detail: String(decoding: bytes.prefix(200), as: UTF8.self))
        }
        return DownstreamResponse(status: Int(response.status.code), body: bytes)
    }

    /// Closes the pooled connections; later calls fail.
    public func shutdown() async {
        try? await client.shutdown()
    }
}
