import Foundation
import Kafka
import PrewarmConfiguration

/// What `prewarmctl dlq replay` did.
public struct ReplayReport: Sendable, Equatable {
    /// Messages sent back, per original topic.
    public var replayed: [String: Int] = [:]
    public var total: Int { replayed.values.reduce(0, +) }
}
