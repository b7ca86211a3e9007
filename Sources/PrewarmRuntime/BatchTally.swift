import Redis

/// Counts a job run's batches add to a Redis hash, each batch's once: a batch worked again
/// (replayed after its pod died between counting and recording it) adds nothing more.
public enum BatchTally {
    /// KEYS: the hash, the set of batches counted. ARGV: expiry ms, batch, then field and
    /// increment pairs. Returns 1 when counted now, 0 when the batch already was.
    static let script = RedisScript(
        name: "batch-tally",
        source: """
            if redis.call('SADD', KEYS[2], ARGV[2]) == 0 then return 0 end
            for i = 3, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
            redis.call('PEXPIRE', KEYS[1], ARGV[1])
            redis.call('PEXPIRE', KEYS[2], ARGV[1])
            return 1
            """)

    /// Adds the increments (field, amount) to the hash at `key` unless `batch` was counted
    /// there before (remembered in `key:batches`); both live `ttl` from now. True when
    /// counted now.
    @discardableResult
    public static func add<Field: RedisArgument>(
        _ increments: some Collection<(Field, Int64)>, batch: Int, to key: String, ttl: Duration,
        on redis: any RedisClient
    ) async throws -> Bool {
        var arguments = RedisArguments()
        arguments.reserveCapacity(arguments: 2 + 2 * increments.count, bytes: 16 * increments.count + 32)
        arguments.append(ttl.milliseconds)
        arguments.append(batch)
        for (field, amount) in increments {
            arguments.append(field)
            arguments.append(amount)
        }
        return try await redis.run(script, keys: RedisArguments([key, key + ":batches"]), arguments: arguments)
            .integer == 1
    }
}
