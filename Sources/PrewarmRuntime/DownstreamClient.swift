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

/// The runtime's HTTP client: one per process, with a connect and a per-call time-out, and
/// failures mapped to the runtime's transient and permanent kinds. `http://` calls go
/// through the runtime's own keep-alive pool (`HTTP1Pool`: a third of async-http-client's
/// CPU per call, which is what bounds a pod making thousands of calls a second);
/// `https://` calls through async-http-client.
public final class DownstreamClient: Sendable {
    public let callTimeout: Duration
    private let plain: HTTP1Pool
    private let client: HTTPClient

    public init(connectTimeout: Duration, callTimeout: Duration, maxConnectionsPerHost: Int) {
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

    public func get(_ url: URL, service: String, timeout: Duration? = nil) async throws -> DownstreamResponse {
        try await get(url.absoluteString, service: service, timeout: timeout)
    }

    /// A GET of a URL already in text (built by the caller, its values percent-encoded).
    public func get(_ url: String, service: String, timeout: Duration? = nil) async throws -> DownstreamResponse {
        try await send(.GET, url, headers: [], body: nil, service: service, timeout: timeout)
    }

    public func post(
        _ url: URL, json body: [UInt8], service: String, headers: [(String, String)] = [], timeout: Duration? = nil
    ) async throws -> DownstreamResponse {
        try await send(
            .POST, url.absoluteString, headers: [("Content-Type", "application/json")] + headers,
            body: ByteBuffer(bytes: body), service: service, timeout: timeout)
    }

    private func send(
        _ method: HTTPMethod, _ url: String, headers: [(String, String)], body: ByteBuffer?, service: String,
        timeout: Duration?
    ) async throws -> DownstreamResponse {
        let limit = timeout ?? callTimeout
        let status: Int
        var answer: ByteBuffer
        do {
            if let plainURL = PlainHTTPURL(url) {
                let reply = try await plain.execute(
                    HTTP1Call(
                        method: method, host: plainURL.host, port: plainURL.port, target: plainURL.target,
                        headers: headers, body: body,
                        deadline: .now() + .milliseconds(Int64(limit.milliseconds))))
                (status, answer) = (reply.status, reply.body)
            } else {
                var request = HTTPClientRequest(url: url)
                request.method = method
                for (name, value) in headers { request.headers.add(name: name, value: value) }
                if let body { request.body = .bytes(body) }
                let response = try await client.execute(request, timeout: .milliseconds(Int64(limit.milliseconds)))
                answer = try await response.body.collect(upTo: 8 << 20)
                status = Int(response.status.code)
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
        } catch let error as DownstreamError {
            throw error
        } catch {
            throw DownstreamError(service: service, kind: .connection, detail: "\(error)")
        }
        let bytes = answer.readBytes(length: answer.readableBytes) ?? []
        guard (200..<300).contains(status) else {
            throw DownstreamError(
                service: service, kind: .status(status), detail: String(decoding: bytes.prefix(200), as: UTF8.self))
        }
        return DownstreamResponse(status: status, body: bytes)
    }

    /// Closes the pooled connections; later calls fail.
    public func shutdown() async {
        await plain.shutdown()
        try? await client.shutdown()
    }
}

/// An `http://host[:port]/target` URL in text, taken apart without Foundation's parser
/// (nil for anything else: https, user info, no host).
struct PlainHTTPURL: Equatable {
    var host: String
    var port: Int
    var target: String

    init?(_ url: String) {
        var rest = Substring(url)
        guard rest.count > 7, rest.prefix(7).lowercased() == "http://" else { return nil }
        rest = rest.dropFirst(7)
        let end = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        let authority = rest[..<end]
        guard !authority.isEmpty, !authority.contains("@") else { return nil }
        var target = String(rest[end...].prefix { $0 != "#" })
        if target.isEmpty || target.first == "?" { target = "/" + target }
        if authority.first == "[" {
            // [IPv6]:port
            guard let close = authority.firstIndex(of: "]") else { return nil }
            host = String(authority[authority.index(after: authority.startIndex)..<close])
            let after = authority[authority.index(after: close)...]
            if after.isEmpty {
                port = 80
            } else {
                guard after.first == ":", let number = Int(after.dropFirst()), (1...65535).contains(number) else {
                    return nil
                }
                port = number
            }
        } else if let colon = authority.lastIndex(of: ":") {
            guard let number = Int(authority[authority.index(after: colon)...]), (1...65535).contains(number) else {
                return nil
            }
            host = String(authority[..<colon])
            port = number
        } else {
            host = String(authority)
            port = 80
        }
        guard !host.isEmpty else { return nil }
        self.target = target
    }
}
