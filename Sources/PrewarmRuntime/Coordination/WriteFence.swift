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

/// A fenced write of many keys in which each key is written alone, by the same Lua function
/// `write(key, <its arguments>, <the shared arguments>)` (`function` defines it; it must be
/// idempotent: a key may be written again). The scripts that run it are made from it: one over
/// the keys of a slot (`runFenced(_:fence:keys:shared:perKey:)` with `bySlot`), and, on a
/// cluster, one over a primary's keys of many slots (`byServer`, Redis 7's
/// `allow-cross-slot-keys`): a batch spread over a thousand slots is then three scripts, not
/// a thousand.
public struct FencedKeyWrite: Sendable {
    /// Over one slot's keys. KEYS: the guard, then the keys; ARGV: the fence argument ('':
    /// none), the shared arguments, then each key's `width` arguments. -1 when fenced, else
    /// the number of keys.
    public let bySlot: RedisScript
    /// Over one server's keys of several slots; it declares one key (so the cluster routes
    /// it) and reaches the rest through ARGV. ARGV: the number of slots, the shared arguments,
    /// then per slot its guard key, its fence argument, its number of keys, and per key the
    /// key and its `width` arguments. Every slot's guard is checked before any key is written
    /// (-1 when one refuses: nothing written). A slot the node does not serve (the client's
    /// map is stale: a slot moving or moved) fails its calls, which are caught: the script
    /// returns those keys' positions (1-based, in ARGV's order) for the caller to write a
    /// script per slot, which follows the redirects.
    public let byServer: RedisScript
    /// Shared arguments, and each key's own.
    let shared: Int
    let width: Int

    public init(name: String, shared: Int = 0, width: Int, function: String) {
        self.shared = shared
        self.width = width
        func list(_ arguments: [String]) -> String { arguments.map { ", " + $0 }.joined() }
        let sharedInSlot = list((0..<shared).map { "ARGV[\($0 + 2)]" })
        let ownInSlot = list((0..<width).map { "ARGV[\(width) * i + \(shared + 2 - 2 * width + $0)]" })
        bySlot = RedisScript(
            name: name,
            source: FenceScript.lua + function + """

                if ARGV[1] ~= '' and not fenced(KEYS[1], ARGV[1]) then return -1 end
                for i = 2, #KEYS do write(KEYS[i]\(ownInSlot)\(sharedInSlot)) end
                return #KEYS - 1
                """)
        let sharedInServer = list((0..<shared).map { "ARGV[\($0 + 2)]" })
        let ownInServer = list((0..<width).map { "ARGV[at + \($0 + 1)]" })
        byServer = RedisScript(
            name: name + "-by-server",
            source: "#!lua flags=allow-cross-slot-keys\n" + FenceScript.lua + function + """

                local slots = tonumber(ARGV[1])
                local elsewhere = {}
                local at = \(shared + 2)
                for slot = 1, slots do
                  if ARGV[at + 1] ~= '' then
                    local served, allowed = pcall(fenced, ARGV[at], ARGV[at + 1])
                    if not served then elsewhere[slot] = true elseif not allowed then return -1 end
                  end
                  at = at + 3 + \(width + 1) * tonumber(ARGV[at + 2])
                end
                local failed, position = {}, 0
                at = \(shared + 2)
                for slot = 1, slots do
                  local count = tonumber(ARGV[at + 2])
                  at = at + 3
                  for _ = 1, count do
                    position = position + 1
                    if elsewhere[slot] or not pcall(write, ARGV[at]\(ownInServer)\(sharedInServer)) then
                      failed[#failed + 1] = position
                    end
                    at = at + \(width + 1)
                  end
                end
                return failed
                """)
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
        return try await runChecked(
            script, fence: fence, keys: keys, groups: atomicGroups(of: keys), shared: shared, perKey: perKey)
    }

    /// `write` over `keys` under `fence`: on one server, `bySlot` once; on a cluster, after the
    /// fence's check, `byServer` once per primary (at once), then the keys a primary gave back
    /// `bySlot` per slot. The fence's refusal is thrown as `runFenced` throws it.
    public func runFenced(
        _ write: FencedKeyWrite, fence: (any WriteFence)?, keys: [String], shared: [any RedisArgument] = [],
        perKey: (Int, inout RedisArguments) throws -> Void
    ) async throws {
        precondition(shared.count == write.shared, "\(write.bySlot.name) takes \(write.shared) shared arguments")
        guard splitsKeysBySlot else {
            try await runFenced(write.bySlot, fence: fence, keys: keys, shared: shared, perKey: perKey)
            return
        }
        guard !keys.isEmpty else { return }
        try await fence?.check(on: self)
        var orders: [[Int]] = []
        var calls: [(keys: RedisArguments, arguments: RedisArguments)] = []
        for server in serverGroups(of: keys) {
            var arguments = RedisArguments()
            arguments.append(server.count)
            for argument in shared { arguments.append(argument) }
            var order: [Int] = []
            for slot in server {
                let guarded: (key: String, argument: String) =
                    fence?.guarding(keys[slot[0]], on: self) ?? (keys[slot[0]], "")
                arguments.append(guarded.key)
                arguments.append(guarded.argument)
                arguments.append(slot.count)
                for index in slot {
                    arguments.append(keys[index])
                    try perKey(index, &arguments)
                }
                order += slot
            }
            orders.append(order)
            calls.append((RedisArguments([keys[order[0]]]), arguments))
        }
        var elsewhere: [Int] = []
        for (order, reply) in zip(orders, try await run(write.byServer, calls: calls)) {
            guard case .array(let failed) = reply else {
                if let fence, reply == .integer(-1) { throw fence.refusal }
                throw RedisError(.server, operation: write.byServer.name, message: "unexpected reply \(reply)")
            }
            for case .integer(let position) in failed { elsewhere.append(order[Int(position) - 1]) }
        }
        guard !elsewhere.isEmpty else { return }
        let groups = atomicGroups(of: elsewhere.map { keys[$0] }).map { $0.map { elsewhere[$0] } }
        try await runChecked(write.bySlot, fence: fence, keys: keys, groups: groups, shared: shared, perKey: perKey)
    }

    /// `script` once per group of `keys`' indices, the fence already checked.
    @discardableResult
    private func runChecked(
        _ script: RedisScript, fence: (any WriteFence)?, keys: [String], groups: [[Int]],
        shared: [any RedisArgument], perKey: (Int, inout RedisArguments) throws -> Void
    ) async throws -> [(indices: [Int], reply: RedisReply)] {
        var calls: [(indices: [Int], keys: RedisArguments, arguments: RedisArguments)] = []
        for group in groups {
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
