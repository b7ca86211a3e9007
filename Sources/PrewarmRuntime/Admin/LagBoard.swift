import Kafka
import Redis
import Synchronization

/// Consumer lag as the workers see it, kept in Redis so that `prewarmctl status` can show it
/// from any machine that reaches Redis, without a Kafka client: each pod writes its
/// partitions' lag to `prewarm:lag:{group}:{owner}` every few seconds, with a short expiry,
/// so a pod that stops disappears from the board.
public struct LagBoard: Sendable {
    public static let prefix = "prewarm:lag:"
    public let redis: any RedisClient
    public let group: String
    public let owner: String

    public init(redis: any RedisClient, group: String, owner: String) {
        self.redis = redis
        self.group = group
        self.owner = owner
    }

    /// A consume loop's `onLag`: writes at most every `every`, and at once when the lag has
    /// just reached zero; an empty map (the loop left its group) removes this pod's entry.
    /// Never fails the loop.
    public func publisher(every: Duration = .seconds(5)) -> @Sendable ([KafkaTopicPartition: Int64]) async -> Void {
        let last = Mutex<(at: ContinuousClock.Instant, total: Int64)?>(nil)
        return { lags in
            let total = lags.values.reduce(0, +)
            let due = last.withLock { last in
                let caughtUp = total == 0 && (last?.total ?? 1) != 0
                guard lags.isEmpty || caughtUp || last.map({ ContinuousClock.now - $0.at >= every }) ?? true else {
                    return false
                }
                last = (.now, total)
                return true
            }
            guard due else { return }
            try? await publish(lags)
        }
    }

    public func publish(_ lags: [KafkaTopicPartition: Int64]) async throws {
        let key = Self.prefix + "\(group):\(owner)"
        var commands = [RedisCommand("DEL", key)]
        if !lags.isEmpty {
            var hset = RedisArguments()
            hset.append(key)
            for (partition, lag) in lags {
                hset.append("\(partition.topic)[\(partition.partition)]")
                hset.append(lag)
            }
            commands.append(RedisCommand("HSET", arguments: hset))
            commands.append(RedisCommand("EXPIRE", key, 60))
        }
        _ = try await redis.pipeline(commands)
    }

    /// Lag per group: partition (`topic[n]`) to messages behind, from every live pod.
    public static func read(_ redis: any RedisClient) async throws -> [String: [String: Int64]] {
        var groups: [String: [String: Int64]] = [:]
        for key in Set(try await redis.keys(matching: prefix + "*", count: 200)) {
            let rest = key.dropFirst(prefix.count)
            guard let split = rest.firstIndex(of: ":") else { continue }
            let group = String(rest[..<split])
            let flat = try await redis.send("HGETALL", key).array ?? []
            for index in stride(from: 0, to: flat.count - 1, by: 2) {
                groups[group, default: [:]][flat[index].string ?? ""] = flat[index + 1].integer ?? 0
            }
        }
        return groups
    }
}
