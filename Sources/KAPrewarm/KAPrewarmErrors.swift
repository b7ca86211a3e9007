import CoreMetrics
import Foundation
import Logging
import Postgres
import PrewarmRuntime
import Redis
import Synchronization

/// Thrown when another runner holds the live's lease (a stalled one, not yet expired): the
/// task is retried after a backoff.
struct LeaseBusy: ClassifiedError, CustomStringConvertible {
    let key: String
    var failureKind: FailureKind { .transient }
    var description: String { "\(key) is held by another runner" }
}

/// A pre-warm that cannot succeed (its retry rows ran out of attempts, verification kept
/// failing, the shop is gone).
struct PrewarmFailed: ClassifiedError, CustomStringConvertible {
    let reason: String
    var failureKind: FailureKind { .permanent }
    var description: String { reason }
}
