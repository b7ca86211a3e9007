import Foundation
import Kafka

/// What a job's code knows of the run it works for.
public struct JobRunInfo: Sendable, Equatable {
    public let job: String
    public let period: String
    public let attempt: Int
    public let forced: Bool
    /// When the run was due (its scheduled fire, or the trigger's time).
    public let due: Date

    public init(job: String, period: String, attempt: Int, forced: Bool, due: Date) {
        self.job = job
        self.period = period
        self.attempt = attempt
        self.forced = forced
        self.due = due
    }
}
