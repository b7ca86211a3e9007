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
