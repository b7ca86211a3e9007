import Foundation
import PrewarmRuntime
import Redis

/// KA's batches on a Redis Cluster: a transaction per slot, as on one Redis.
extension KACache {
    /// A batch under `fence` on a cluster. A big shop's batch is one to three sub-shards
    /// (`KAUserPosition`), so its keys fall in a few slots; per slot, on a writer connection
    /// to the slot's primary (the slots of one primary in one pipeline, the primaries at once):
    /// `WATCH copy`, a script that touches the fence's copy in the slot when a newer lease
    /// generation wrote there (which aborts the transaction), `MULTI`, the copy set to this
    /// lease's generation, `SET key value PXAT expiry NX` for each key, `EXEC`. The WATCH makes
    /// the copy's check and the writes one step, as the slot script's `fenced` does, with plain
    /// SETs, which cost Redis about half what the same SETs cost from Lua. The lease is renewed
    /// before the batch (`KALeaseFence.check(on:)`), so a runner superseded before it writes
    /// nothing, and once the newer runner wrote a slot, the older writes there no more.
    ///
    /// The Lua path (`write(_:fence:)`, which follows redirects and keeps a later expiry) takes
    /// what a transaction cannot: keys that existed (their NX refused), the slots whose primary
    /// answered otherwise (`MOVED`/`ASK`: a slot moving, a map not yet read again) and a slot
    /// whose transaction another writer of this lease kept aborting (two batches meeting in a
    /// sub-shard both set its copy).
    func write(
        _ entries: Entries, fence: KALeaseFence, on cluster: RedisClusterClient, writers: KAWriterConnections
    ) async throws -> FencedResult {
        guard let generation = fence.lease.generation else { return try await write(entries, fence: fence) }
        do {
            try await fence.check(on: cluster)
        } catch is LeaseLost {
            return .leaseLost
        }
        let map = cluster.slotMap
        var slots: [Int: [Int]] = [:]
        for index in 0..<entries.count {
            slots[RedisKeySlot.of(bytes: entries.keys[index]), default: []].append(index)
        }
        var byNode: [RedisSlotMap.Node: [SlotWrite]] = [:]
        var elsewhere: [Int] = []
        for (slot, indices) in slots {
            guard let node = map.primary(of: slot) else {
                elsewhere += indices
                continue
            }
            byNode[node, default: []].append(SlotWrite(slot: slot, indices: indices))
        }
        let copy = fence.copy(generation: generation)
        let outcomes = try await withThrowingTaskGroup(of: NodeOutcome.self) { group in
            for (node, writes) in byNode {
                group.addTask {
                    try await writers.with(node: node) {
                        try await self.transactions(writes, entries, copy: copy, on: $0)
                    }
                }
            }
            var outcomes: [NodeOutcome] = []
            for try await outcome in group { outcomes.append(outcome) }
            return outcomes
        }
        for outcome in outcomes {
            switch outcome {
            case .refused: return .leaseLost
            case .written(let left): elsewhere += left
            }
        }
        guard !elsewhere.isEmpty else { return .written(entries.count) }
        var rest = Entries()
        for index in elsewhere.sorted() {
            rest.append(
                key: entries.keys[index], value: entries.values[2 * index], expiry: entries.values[2 * index + 1])
        }
        guard case .written = try await write(rest, fence: fence) else { return .leaseLost }
        return .written(entries.count)
    }

    struct SlotWrite: Sendable {
        let slot: Int
        let indices: [Int]
    }

    enum NodeOutcome: Sendable {
        /// A newer lease generation wrote one of the slots.
        case refused
        /// Written, but for these keys (indices), left to the Lua path.
        case written(left: [Int])
    }

    /// One primary's slots, a transaction each, in one pipeline (tried up to three times for
    /// the slots another writer's transaction aborted).
    private func transactions(
        _ writes: [SlotWrite], _ entries: Entries, copy: KALeaseFence.Copy, on connection: RedisConnection
    ) async throws -> NodeOutcome {
        var pending = writes
        var left: [Int] = []
        for _ in 0..<3 where !pending.isEmpty {
            var commands = RedisCommands()
            for write in pending { add(write, entries, copy: copy, to: &commands) }
            let replies = try await connection.pipeline(commands)
            var at = 0
            var aborted: [SlotWrite] = []
            for write in pending {
                let count = write.indices.count
                let check = replies[at + 1]
                let exec = replies[at + 4 + count]
                at += 5 + count
                switch exec {
                case .array(let results) where results.count == count + 1:
                    for (index, result) in zip(write.indices, results.dropFirst()) where result == .null {
                        left.append(index)  // it existed: the Lua path keeps a later expiry
                    }
                case .null:
                    guard check == .integer(1) else { return .refused }
                    aborted.append(write)  // another writer of this lease set the copy meanwhile
                default:
                    left += write.indices  // MOVED, ASK, TRYAGAIN...: the Lua path follows them
                }
            }
            pending = aborted
        }
        for write in pending { left += write.indices }
        return .written(left: left)
    }

    private func add(_ write: SlotWrite, _ entries: Entries, copy: KALeaseFence.Copy, to commands: inout RedisCommands)
    {
        let copyKey = copy.key(forSlot: write.slot)
        commands.add(RedisCommand("WATCH", copyKey))
        commands.add(RedisCommand("EVAL", Self.touchIfNewer.source, 1, copyKey, copy.generation))
        commands.add(RedisCommand("MULTI"))
        commands.add(RedisCommand("SET", copyKey, copy.generation, "PX", copy.lifetime))
        for index in write.indices {
            commands.add(arguments: 6)
            commands.argument("SET")
            commands.argument(entries.keys[index])
            commands.argument(entries.values[2 * index])
            commands.argument("PXAT")
            commands.argument(entries.values[2 * index + 1])
            commands.argument("NX")
        }
        commands.add(RedisCommand("EXEC"))
    }

    /// 1 if no newer lease generation than ARGV[1] wrote the slot (the copy is read only);
    /// otherwise sets the copy to itself, which aborts the transaction that watches it, and
    /// returns 0. `fenced`'s `copy:` rule, for a transaction.
    static let touchIfNewer = RedisScript(
        name: "ka-touch-if-newer",
        source: """
            local seen = redis.call('GET', KEYS[1])
            if seen and tonumber(seen) > tonumber(ARGV[1]) then
              redis.call('SET', KEYS[1], seen, 'KEEPTTL')
              return 0
            end
            return 1
            """)
}

extension KALeaseFence {
    /// The fence's copies for a cluster's transactions: this lease's generation, and how long
    /// a copy lives.
    struct Copy: Sendable {
        let name: String
        let generation: Int64
        let lifetime: Int

        func key(forSlot slot: Int) -> String { name + RedisKeySlot.tag(forSlot: slot) }
    }

    func copy(generation: Int64) -> Copy {
        Copy(
            name: copyName, generation: generation,
            lifetime: max(1, Int(expiresAt - Int64(Date().timeIntervalSince1970 * 1000))))
    }
}
