import Redis

/// Counts a job run's batches add to a Redis hash, each batch's once: a batch worked again
/// (replayed after its pod died between counting and recording it) adds nothing more.
public enum BatchTally {
    /// KEYS: the hash, the set of batches counted, and optionally a set the batch's members
    /// join with its counts. ARGV: expiry ms, batch, the number of increments, the field and
    /// increment pairs, then the members. Returns 1 when counted now, 0 when the batch
    /// already was.
    static let script = RedisScript(
        name: "batch-tally",
        source: """
            if redis.call('SADD', KEYS[2], ARGV[2]) == 0 then return 0 end
            local members = 4 + 2 * tonumber(ARGV[3])
            for i = 4, members - 1, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
            if KEYS[3] and #ARGV >= members then
              for i = members, #ARGV, 4000 do
                redis.call('SADD', KEYS[3], unpack(ARGV, i, math.min(i + 3999, #ARGV)))
              end
              redis.call('PEXPIRE', KEYS[3], ARGV[1])
            end
            redis.call('PEXPIRE', KEYS[1], ARGV[1])
            redis.call('PEXPIRE', KEYS[2], ARGV[1])
            return 1
            """)

    /// Adds the increments (field, amount) to the hash at `key` unless `batch` was counted
    /// there before (remembered in `key:batches`), and with them `members` to the set at
    /// `set` (a batch's failed users: recorded exactly when counted); all live `ttl` from
    /// now. True when counted now.
    @discardableResult
    public static func add<Field: RedisArgument>(
        _ increments: some Collection<(Field, Int64)>, batch: Int, to key: String, ttl: Duration,
        members: [Int64] = [], into set: String? = nil, on redis: any RedisClient
    ) async throws -> Bool {
        var arguments = RedisArguments()
        arguments.reserveCapacity(
            arguments: 3 + 2 * increments.count + members.count, bytes: 16 * (increments.count + members.count) + 48)
        arguments.append(ttl.milliseconds)
        arguments.append(batch)
        arguments.append(increments.count)
        for (field, amount) in increments {
            arguments.append(field)
            arguments.append(amount)
        }
        var keys = RedisArguments([key, RedisKeySlot.tagged(key + ":batches", besides: key)])
        if let set {
            keys.append(set)
            for member in members { arguments.append(member) }
        }
        return try await redis.run(script, keys: keys, arguments: arguments).integer == 1
    }
}
