import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// One plain-HTTP/1.1 call: what the pool sends.
struct HTTP1Call: Sendable {
    var method: HTTPMethod
    var host: String
    var port: Int
    /// The path and query, as sent on the request line.
    var target: String
    var headers: [(String, String)] = []
    var body: ByteBuffer?
    /// From the moment the call may start (it has its budget's slot) to its whole answer.
    var timeout: TimeAmount
    /// Run when the call has its slot, before anything is sent; an error it throws ends
    /// the call (a circuit breaker's refusal).
    var admit: (@Sendable () throws -> Void)?
}

struct HTTP1Answer: Sendable {
    var status: Int
    var body: ByteBuffer
    /// From the call getting its slot to its answer (set by the pool at the call's end).
    var duration: TimeAmount = .zero
}

/// Why a call through the pool failed (mapped to `DownstreamError` by its caller).
enum HTTP1Failure: Error, Equatable {
    /// The deadline passed: waiting for a connection, connecting, or waiting for the answer.
    case timeout
    /// Refused, reset or closed before the whole answer arrived.
    case connection(String)
    /// The answer was larger than the pool accepts.
    case tooLarge
    /// The pool was shut down.
    case closed
}
