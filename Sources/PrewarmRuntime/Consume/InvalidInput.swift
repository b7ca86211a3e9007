import Kafka
import Postgres
import Redis

/// Marks a message as bad input from inside a handler, e.g. a reference to a store that
/// does not exist; it goes to the DLQ with this reason.
public struct InvalidMessage: ClassifiedError, CustomStringConvertible {
    public let reason: String
    /// A short class name for the DLQ header and metrics, e.g. `UnknownStore`.
    public let errorClass: String

    public init(_ reason: String, errorClass: String = "InvalidMessage") {
        self.reason = reason
        self.errorClass = errorClass
    }

    public var failureKind: FailureKind { .permanent }
    public var description: String { reason }
}

/// Some items of a batch are bad input, named by their index in the batch the handler was
/// given: the loop dead-letters those and hands the rest back in one call, instead of
/// retrying the batch message by message to find them.
public struct InvalidItems: ClassifiedError, CustomStringConvertible {
    public let errors: [Int: InvalidMessage]

    public init(_ errors: [Int: InvalidMessage]) {
        self.errors = errors
    }

    public var failureKind: FailureKind { .permanent }
    public var description: String { "\(errors.count) invalid items: \(errors.values.map(\.reason).sorted())" }
}
