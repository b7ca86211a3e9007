import Foundation
import Postgres
import PrewarmConfiguration

/// How durable tasks beat, are rescued and are pruned.
public struct TaskSettings: Sendable {
    /// How often a running task's heartbeat is written.
    public var heartbeat: Duration
    /// A running task whose heartbeat is this old is rescued (its runner died): by heartbeat
    /// age, never by elapsed run time, so a task that runs for hours and keeps beating is
    /// never rescued.
    public var staleAfter: Duration
    /// Succeeded and cancelled tasks are pruned after this long; failed ones after `keepFailed`.
    public var keepSucceeded: Duration
    public var keepFailed: Duration

    public init(
        heartbeat: Duration = .seconds(5), staleAfter: Duration = .seconds(30), keepSucceeded: Duration = .days(7),
        keepFailed: Duration = .days(30)
    ) {
        self.heartbeat = heartbeat
        self.staleAfter = staleAfter
        self.keepSucceeded = keepSucceeded
        self.keepFailed = keepFailed
    }
}
