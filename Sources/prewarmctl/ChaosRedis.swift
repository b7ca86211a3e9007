import Logging
import PrewarmRuntime
import Redis

/// The chaos harness's own Redis client: its reads and its checks of the fleet's records ride
/// out the outages it causes (a failover, a restart) as the workers do, retrying what
/// `Failure.kind` calls transient for up to a minute, so the harness never stops a run the
/// fleet survives.
final class ChaosRedis: RedisClient, Closable {
    let base: any RedisClient & Closable
    private let policy = RetryPolicy(
        backoff: Backoff(initial: .milliseconds(200), maximum: .seconds(2)), maxAttempts: 60)
    private let logger: Logger

    init(_ base: any RedisClient & Closable, logger: Logger) {
        self.base = base
        self.logger = logger
    }

    var configuration: RedisConfiguration { base.configuration }
    var splitsKeysBySlot: Bool { base.splitsKeysBySlot }

    func atomicGroups(of keys: [String]) -> [[Int]] { base.atomicGroups(of: keys) }

    func serverGroups(of keys: [String]) -> [[[Int]]] { base.serverGroups(of: keys) }

    func pipeline(_ commands: [RedisCommand]) async throws -> [RedisReply] {
        try await retrying("chaos: Redis", policy: policy, logger: logger) { try await base.pipeline(commands) }
    }

    func run(_ script: RedisScript, keys: RedisArguments, arguments: RedisArguments) async throws -> RedisReply {
        try await retrying("chaos: Redis \(script.name)", policy: policy, logger: logger) {
            try await base.run(script, keys: keys, arguments: arguments)
        }
    }

    func keys(matching pattern: String, count: Int) async throws -> [String] {
        try await retrying("chaos: Redis SCAN", policy: policy, logger: logger) {
            try await base.keys(matching: pattern, count: count)
        }
    }

    func close() async { await base.close() }
}
