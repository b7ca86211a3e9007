import Redis

/// What guards a batch of writes against a writer that lost its right to write (an older
/// attempt of a run, a runner whose lease passed on): checked in the same script as the
/// writes, by `FenceScript.lua`'s `fenced(key, fence)` with the key and argument `guarding`
/// gives for the script's keys. On a cluster the writes run one script per slot
/// (`RedisClient.runFenced`), and each checks a copy of the fence in its slot.
public protocol WriteFence: Sendable {
    /// Before the writes: on a cluster, throws `refusal` when the fence's source of truth (a
    /// run's record, a lease) says this writer was superseded.
    func check(on redis: any RedisClient) async throws
    /// The key and argument of `fenced(key, fence)` in a script over keys of `key`'s slot.
    func guarding(_ key: String, on redis: any RedisClient) -> (key: String, argument: String)
    /// What a refused write throws.
    var refusal: any Error { get }
}

/// The Lua side of every `WriteFence`, and how its keys and arguments are made.
public enum FenceScript {
    /// A Lua function, `fenced(key, fence)`, true when the writes may go ahead; the script
    /// then returns without writing, and its caller throws the fence's refusal. The argument
    /// says how:
    /// - `{attempt}`: `key` is a run's record, which must name this attempt (or be missing: a
    ///   batch worked outside a run), so an older attempt never writes after a newer one began;
    /// - `lease:{ms}:{token}`: `key` is a lease, which must hold the token; it is extended;
    /// - `copy:{n}:{ms}`: on a cluster, `key` is the fence's copy in the slot of the keys it
    ///   guards, the newest writer (attempt, lease generation) that wrote there: advanced by
    ///   this one when older, refused when newer. The caller checked the source first
    ///   (`WriteFence.check(on:)`), so a writer superseded before its batch began writes nothing,
    ///   and once the newer one wrote a slot, the older one writes there no more.
    public static let lua = """
        local function fenced(key, fence)
          local n, ttl = string.match(fence, '^copy:(%d+):(%d+)$')
          if n then
            local seen = tonumber(redis.call('GET', key) or '0')
            if seen > tonumber(n) then return false end
            if seen < tonumber(n) then redis.call('SET', key, n, 'PX', ttl) end
            return true
          end
          local ms, token = string.match(fence, '^lease:(%d+):(.*)$')
          if ms then
            if redis.call('GET', key) ~= token then return false end
            redis.call('PEXPIRE', key, ms)
            return true
          end
          local current = redis.call('HGET', key, 'attempt')
          return current == false or current == fence
        end
        """

    /// `copy:{n}:{ms}`.
    public static func copyArgument(_ number: some BinaryInteger, lifetime milliseconds: Int) -> String {
        "copy:\(number):\(max(1, milliseconds))"
    }

    /// `name` in the slot of `key`, by the slot's own tag: one copy per slot, whichever keys
    /// a script takes.
    public static func copyKey(_ name: String, slotOf key: String) -> String {
        name + RedisKeySlot.tag(forSlot: RedisKeySlot.of(key))
    }
}

extension RedisClient {
    /// Runs `script` over `keys` once per group that may meet in one script (all of them on
    /// one server, a slot's on a cluster), the groups at once, after the fence's check. Each
    /// call's KEYS are the fence's guard (`WriteFence.guarding(_:on:)`; without one, the group's first key) and
    /// the group's keys; its ARGV the fence argument ('' without a fence), `shared`, then
    /// what `perKey` appends for each of the group's keys. A script answers -1 when `fenced`
    /// refuses it: then the fence's refusal is thrown (some groups may have written: a newer
    /// writer's turn has begun, and it writes them again). Returns each group's key indices
    /// (into `keys`) and reply, in group order.
    @discardableResult
    public func runFenced(
        _ script: RedisScript, fence: (any WriteFence)?, keys: [String], shared: [any RedisArgument] = [],
        perKey: (Int, inout RedisArguments) throws -> Void
    ) async throws -> [(indices: [Int], reply: RedisReply)] {
        try await fence?.check(on: self)
        var calls: [(indices: [Int], keys: RedisArguments, arguments: RedisArguments)] = []
        for group in atomicGroups(of: keys) {
            var callKeys = RedisArguments()
            var arguments = RedisArguments()
            let guarded: (key: String, argument: String) =
                fence?.guarding(keys[group[0]], on: self) ?? (keys[group[0]], "")
            callKeys.append(guarded.key)
            arguments.append(guarded.argument)
            for argument in shared { arguments.append(argument) }
            for index in group {
                callKeys.append(keys[index])
                try perKey(index, &arguments)
            }
            calls.append((group, callKeys, arguments))
        }
        let replies = zip(
            calls.map(\.indices), try await run(script, calls: calls.map { ($0.keys, $0.arguments) })
        ).map { (indices: $0, reply: $1) }
        if let fence, replies.contains(where: { $0.reply == .integer(-1) }) { throw fence.refusal }
        return replies
    }
}
