import Kafka
import Postgres
import Redis

/// How the consume loop treats a handler's error.
public enum FailureKind: Sendable, Equatable {
    /// An outage or contention (Redis or PostgreSQL unreachable, a timeout): pause the
    /// partition, retry the same batch later, never dead-letter it.
    case transient
    /// The message itself cannot be processed: dead-letter it and move on.
    case permanent
}

/// An error that says for itself whether a retry can help.
public protocol ClassifiedError: Error {
    var failureKind: FailureKind { get }
}

public enum Failure {
    /// Transient for outages of the stores and the bus; permanent for everything else,
    /// so an unknown bug dead-letters its message instead of stalling the partition.
    public static func kind(of error: Error) -> FailureKind {
        switch error {
        case let error as ClassifiedError: return error.failureKind
        case let error as RedisError: return error.isTransient ? .transient : .permanent
        case let error as PostgresError: return error.isTransient ? .transient : .permanent
        case let error as KafkaError: return error.isFatal ? .permanent : .transient
        case is CancellationError: return .transient
        default: return .permanent
        }
    }

    /// The name written to the DLQ's `prewarm-error-class` header.
    public static func errorClass(of error: Error) -> String {
        if let invalid = error as? InvalidMessage { return invalid.errorClass }
        return String(describing: type(of: error))
    }
}
