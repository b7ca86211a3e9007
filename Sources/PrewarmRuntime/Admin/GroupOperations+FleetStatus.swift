import Foundation
import Postgres
import PrewarmConfiguration
import Redis

extension GroupOperations {
    /// Lag of every consumer group of the catalog, over all the partitions of its topic,
    /// whether or not a pod of it runs: committed offset (or the earliest kept one) to the
    /// high watermark.
    public func catalogLag() async throws -> [String: [String: Int64]] {
        var groups: [String: [String: Int64]] = [:]
        for spec in TopicCatalog.sources {
            guard let group = spec.consumerGroup else { continue }
            for partition in try await lag(group: group, topics: [spec.name]) {
                groups[group, default: [:]]["\(spec.name)[\(partition.partition.partition)]"] = partition.lag
            }
        }
        return groups
    }
}
