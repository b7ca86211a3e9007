import CoreMetrics
import Foundation
import Logging
import Postgres
import PrewarmConfiguration
import Redis
import Synchronization

/// How job runs are leased and kept.
public struct JobRunSettings: Sendable {
    /// The winner's lease; a dead winner's run is taken over this long after its last renewal.
    public var lease: Duration
    /// How often each pod looks for runs to take over, catch up or alert on.
    public var checkEvery: Duration
    /// How long a run's records stay in Redis.
    public var retention: Duration
    /// A batch begun this many times by consumers that never came back from it (their pods
    /// died in it) is set aside, failed and alerted, instead of taking the next pod with it.
    public var maxBatchCrashes: Int

    public init(
        lease: Duration = .seconds(30), checkEvery: Duration = .seconds(10), retention: Duration = .days(7),
        maxBatchCrashes: Int = 3
    ) {
        self.lease = lease
        self.checkEvery = checkEvery
        self.retention = retention
        self.maxBatchCrashes = maxBatchCrashes
    }
}
