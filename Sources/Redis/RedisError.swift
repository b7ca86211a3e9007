import CHiredis

/// Every failure of the Redis wrapper. Messages name the operation and never carry the
/// password.
public struct RedisError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        /// Could not open a connection (refused, unreachable, DNS, connect timeout).
        case connectionFailed
        /// An open connection broke (server closed it, reset, EOF).
        case connectionLost
        /// No reply within the command timeout.
        case timeout
        /// The server refused the credentials (WRONGPASS) or wants some (NOAUTH).
        case authenticationFailed
        /// The server answered with an error reply, e.g. `WRONGTYPE`, `NOSCRIPT`.
        case server
        /// hiredis could not parse the stream or ran out of memory.
        case protocolError
        /// The connection has been closed by its owner.
        case closed
        /// A cluster client refused, at the call, a command or transaction whose keys are in
        /// more than one hash slot (Redis Cluster would answer CROSSSLOT).
        case crossSlot
    }

    public var code: Code
    public var operation: String
    public var message: String

    public init(_ code: Code, operation: String, message: String) {
        self.code = code
        self.operation = operation
        self.message = message
    }

    /// True for failures that a retry after a pause can cure (an outage, not bad input).
    public var isTransient: Bool {
        switch code {
        case .connectionFailed, .connectionLost, .timeout: return true
        case .server:
            return message.hasPrefix("LOADING") || message.hasPrefix("BUSY") || message.hasPrefix("TRYAGAIN")
                || message.hasPrefix("CLUSTERDOWN") || message.hasPrefix("MOVED") || message.hasPrefix("ASK ")
        case .authenticationFailed, .protocolError, .closed, .crossSlot: return false
        }
    }

    /// The first word of a server error (`WRONGTYPE`, `NOSCRIPT`, `ERR`), if any.
    public var serverErrorPrefix: String? {
        guard code == .server || code == .authenticationFailed else { return nil }
        return message.split(separator: " ", maxSplits: 1).first.map(String.init)
    }

    public var description: String { "Redis \(operation) failed (\(code)): \(message)" }
}

public enum RedisVersion {
    /// The hiredis headers this was built with, e.g. `0.14.1`.
    public static let hiredis = "\(HIREDIS_MAJOR).\(HIREDIS_MINOR).\(HIREDIS_PATCH)"
}
