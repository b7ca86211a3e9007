import Kafka
import PrewarmConfiguration

extension GroupOperations {
    /// Creates every topic of the catalog that is missing, with the catalog's partition
    /// counts and `replicationFactor` (by default 3, or fewer if the cluster is smaller).
    /// Returns the topics created; existing ones are left as they are.
    public func createCatalogTopics(replicationFactor: Int? = nil) async throws -> [String] {
        try await using(try admin()) { admin in
            let brokers = try await admin.brokerCount()
            let factor = replicationFactor ?? min(3, max(brokers, 1))
            guard factor <= brokers else {
                throw UsageError(
                    "replication factor \(factor) needs at least \(factor) brokers; the cluster has \(brokers)")
            }
            return try await admin.createTopics(
                TopicCatalog.all.map {
                    (
                        name: $0.name, partitions: $0.partitions, replicationFactor: factor,
                        configs: TopicSpec.sourceTopic(ofDeadLetterTopic: $0.name) == nil
                            ? [:] : TopicCatalog.deadLetterConfigs
                    )
                })
        }
    }
}
