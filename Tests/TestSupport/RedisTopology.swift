import PrewarmRuntime
import Redis
import Testing

/// Where a Redis-facing test runs: the one local Redis, or the local 3-primary Redis Cluster
/// (`scripts/services.sh start redis-cluster`). Tests of what prewarm writes take it as an
/// argument (`@Test(arguments: RedisTopology.allCases)`), so the same assertions hold on both:
/// a script or transaction whose keys span slots fails on the cluster at the call
/// (`RedisError.Code.crossSlot`), never only in production.
public enum RedisTopology: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case single
    case cluster

    public var testDescription: String { rawValue }

    /// A client of the topology, closed after the test (needs `.closesResources`).
    public func connect() async throws -> any RedisClient & Closable {
        let client: any RedisClient & Closable
        switch self {
        case .single:
            client = try await RedisConnection.connect(try TestEnvironment.redis())
        case .cluster:
            let nodes = try TestEnvironment.redisClusterNodes()
            client = try await RedisClusterClient.connect(
                seeds: nodes, configuration: try TestEnvironment.redis(node: nodes[0]))
        }
        closeAfterTest { await client.close() }
        return client
    }

    /// The worker environment that points a process at this topology.
    public func workerEnvironment() throws -> [String: String] {
        switch self {
        case .single: return [:]
        case .cluster:
            return [
                "PREWARM_REDIS_CLUSTER_NODES": try TestEnvironment.require("PREWARM_DEV_REDIS_CLUSTER_NODES"),
                "PREWARM_REDIS_DB": "0",
            ]
        }
    }
}
