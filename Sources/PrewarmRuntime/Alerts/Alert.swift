import CoreMetrics
import Foundation
import Logging
import Postgres
import Redis
import Synchronization

/// One alert: something an operator must look at now (a run that failed, a deadline at
/// risk, an outage that has lasted).
public struct Alert: Sendable, Codable, Equatable {
    /// A short stable name: `job-failed`, `deadline-risk`, `outage`, `duplicate-reservation`.
    public let kind: String
    public let message: String
    public let worker: String
    public let at: Date
    public let details: [String: String]
}
