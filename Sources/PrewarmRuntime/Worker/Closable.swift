import Kafka
import Postgres
import PrewarmConfiguration
import Redis

/// A client that must be closed when done: its C handle and thread outlive it otherwise.
public protocol Closable: Sendable {
    func close() async
}

extension KafkaAdmin: Closable {}
extension KafkaConsumer: Closable {}
extension KafkaProducer: Closable {}
extension RedisConnection: Closable {}
extension PostgresConnection: Closable {}
extension RedisPool: Closable {}
extension RedisEventLoopConnection: Closable {}
extension RedisClusterClient: Closable {}

/// Runs `body` with `client` and closes it afterwards, whether `body` returned or threw.
public func using<Client: Closable, Result>(_ client: Client, _ body: (Client) async throws -> Result) async throws
    -> Result
{
    do {
        let result = try await body(client)
        await client.close()
        return result
    } catch {
        await client.close()
        throw error
    }
}

extension EnvironmentReader {
    /// The Redis of `PREWARM_REDIS_*` for a command (not a worker): the cluster of
    /// `PREWARM_REDIS_CLUSTER_NODES` when it is set, one server otherwise.
    public func connectRedis(clientName: String, poolSize: Int = 2) async throws -> any RedisClient & Closable {
        let configuration = try redis(clientName: clientName)
        if let nodes = try redisCluster() {
            return try await RedisClusterClient.connect(seeds: nodes, configuration: configuration, poolSize: poolSize)
        }
        return try await RedisPool.connect(configuration, size: poolSize)
    }
}
