import Foundation
import PrewarmRuntime
import Redis

/// The key-account cache in Redis (README and topics.md):
/// - `ka:shop:{shopId}`, `ka:shop:{shopId}:staff`, `ka:shop:{shopId}:products`,
///   `ka:shop:{shopId}:marketing`: the shop's JSON;
/// - `ka:user:{<shopId>:<subShard>}:<userId>`: a shop user's JSON, where `subShard` is the
///   user id modulo 1021 (`subShard(ofUser:)`) and `{…}` a literal hash tag;
/// - `prewarm:{ka:<liveId>}:lock`: the lease of the live's pre-warm (its holder's token);
/// - `prewarm:{ka:<liveId>}:fence`: the token of the lease's latest taker (watched by the
///   writes), and `…:fence:generation`, how many times it was taken;
/// - `prewarm:{ka:<liveId>}:done`: the success flag, until the stream ends;
/// - on a cluster, `prewarm:ka-fence:<liveId>{<slot tag>}`: per slot the writes touched, the
///   newest lease generation that wrote there (`KALeaseFence`).
///
/// The live's keys share the hash tag `{ka:<liveId>}` (the lease is taken with its fence in
/// one script). A shop's users are spread over 1021 sub-shards, each its own hash tag: a
/// stream's viewers read from as many slots (every primary), while the pre-warm reads the
/// users by sub-shard, so a batch's keys share one or a few slots and its fenced write checks
/// the fence's copy in those few (it was one copy per key with the keys spread one a slot).
/// 1021 is prime: ids that share a stride (all even, all multiples of 1000) still spread.
///
/// Every key expires at the stream's end plus 30 min plus up to 10 min at random, so a shop's
/// keys do not all expire in one instant; a key already expiring later (another stream of the
/// shop) keeps its later expiry.
public struct KACache: Sendable {
    public let redis: any RedisClient
    /// Put before every key (tests use one of their own).
    public let prefix: String

    public init(redis: any RedisClient, prefix: String = "") {
        self.redis = redis
        self.prefix = prefix
    }

    public func shopKey(_ shop: Int64) -> String { "\(prefix)ka:shop:\(shop)" }
    public func staffKey(_ shop: Int64) -> String { "\(prefix)ka:shop:\(shop):staff" }
    public func productsKey(_ shop: Int64) -> String { "\(prefix)ka:shop:\(shop):products" }
    public func marketingKey(_ shop: Int64) -> String { "\(prefix)ka:shop:\(shop):marketing" }
    public func userKey(shop: Int64, user: Int64) -> String {
        "\(prefix)ka:user:{\(shop):\(Self.subShard(ofUser: user))}:\(user)"
    }
    /// A `SCAN`/`KEYS` pattern of every user key of the shop.
    public func userKeyPattern(shop: Int64) -> String { "\(prefix)ka:user:{\(shop):*" }
    /// `ka:user:{<shopId>:<subShard>}:`, to which a user id's digits are appended.
    public func userKeyPrefix(shop: Int64, subShard: Int64) -> [UInt8] {
        Array("\(prefix)ka:user:{\(shop):\(subShard)}:".utf8)
    }

    /// How many sub-shards a shop's users are spread over (a prime).
    public static let userSubShards: Int64 = 1021
    /// A user's sub-shard: its id modulo `userSubShards`, from 0 (a negative id's too).
    public static func subShard(ofUser user: Int64) -> Int64 {
        let remainder = user % userSubShards
        return remainder < 0 ? remainder + userSubShards : remainder
    }
    public func leaseKey(live: Int64) -> String { "\(prefix)prewarm:{ka:\(live)}:lock" }
    public func doneKey(live: Int64) -> String { "\(prefix)prewarm:{ka:\(live)}:done" }
    /// The token of the lease's latest taker: changes only when someone takes the lease.
    public func fenceKey(live: Int64) -> String { "\(prefix)prewarm:{ka:\(live)}:fence" }
    func riskKey(live: Int64) -> String { "\(prefix)prewarm:{ka:\(live)}:deadline-alerted" }

    /// The right of `lease`'s holder to write the live's keys; its copies in a cluster's
    /// slots live until `expiresAt` (no longer than the lease's generation count).
    public func fence(_ lease: RedisLease, live: Int64, until expiresAt: Date) -> KALeaseFence {
        KALeaseFence(
            lease: lease, tokenKey: fenceKey(live: live), copyName: "\(prefix)prewarm:ka-fence:\(live)",
            expiresAt: Int64(expiresAt.timeIntervalSince1970 * 1000))
    }
    var rateKey: String { "\(prefix)prewarm:ka:rate" }

    /// Users per second per writer that the last pre-warm measured (for the deadline check
    /// of a task being queued); nil before the first.
    public func lastRate() async throws -> Double? {
        try await redis.send("GET", rateKey).string.flatMap(Double.init)
    }

    func recordRate(_ perWriter: Double) async throws {
        try await redis.send("SET", rateKey, String(format: "%.1f", perWriter), "EX", 30 * 86_400)
    }

    /// Writes keys only while the fence lets this writer (`KALeaseFence`: the lease is ours,
    /// and extended; or on a cluster, the slot's copy of its generation), or unfenced (the
    /// retry drainer's writes: the data is the same whoever writes it): fencing at the store,
    /// so a holder that stalled past its lease cannot write a single key after another took
    /// over. Per key its value and its expiry (ms since the epoch); a key expiring later than
    /// that keeps its expiry.
    static let fencedWrite = FencedKeyWrite(
        name: "ka-fenced-write", width: 2,
        function: """

            local function write(key, value, expiry)
              if not redis.call('SET', key, value, 'PXAT', expiry, 'NX') then
                if redis.call('PEXPIRETIME', key) > tonumber(expiry) then
                  redis.call('SET', key, value, 'KEEPTTL')
                else
                  redis.call('SET', key, value, 'PXAT', expiry)
                end
              end
            end
            """)

    /// Keys and values ready for one write: arguments laid end to end in two buffers.
    public struct Entries: Sendable {
        public private(set) var keys = RedisArguments()
        /// Each key's value, then its expiry (ms since the epoch, decimal).
        public private(set) var values = RedisArguments()
        public private(set) var count = 0

        public init() {}

        public mutating func append(key: some RedisArgument, value: some RedisArgument, expiry: some RedisArgument) {
            keys.append(key)
            values.append(value)
            values.append(expiry)
            count += 1
        }

        /// A key made of `keyPrefix` and `id`'s digits.
        public mutating func append(keyPrefix: [UInt8], id: Int64, value: some RedisArgument, expiry: Int64) {
            keys.append(prefix: keyPrefix, id)
            values.append(value)
            values.append(expiry)
            count += 1
        }

        mutating func reserve(_ entries: Int, valueBytes: Int) {
            keys.reserveCapacity(arguments: entries, bytes: entries * 32)
            values.reserveCapacity(arguments: entries * 2, bytes: valueBytes + entries * 14)
        }
    }

    public enum FencedResult: Sendable, Equatable {
        case written(Int)
        case leaseLost
    }

    /// Writes the entries under `fence` (none: unfenced): one script on one Redis; on a
    /// cluster one per primary, the keys it found elsewhere then one per slot
    /// (`RedisClient.runFenced(_:fence:keys:shared:perKey:)` of a `FencedKeyWrite`).
    public func write(_ entries: Entries, fence: KALeaseFence?) async throws -> FencedResult {
        guard entries.count > 0 else { return .written(0) }
        let keys = (0..<entries.count).map { String(decoding: entries.keys[$0], as: UTF8.self) }
        do {
            try await redis.runFenced(Self.fencedWrite, fence: fence, keys: keys) { index, arguments in
                arguments.append(entries.values[2 * index])
                arguments.append(entries.values[2 * index + 1])
            }
        } catch is LeaseLost {
            return .leaseLost  // the lease's check, or a slot's script, refused this writer
        }
        return .written(entries.count)
    }

    /// A batch of users under `fence`: on one Redis, the transaction below on a connection of
    /// `writers`; on a cluster, a script per primary (a transaction cannot span slots).
    func write(_ entries: Entries, fence: KALeaseFence, writers: KAWriterConnections) async throws
        -> FencedResult
    {
        if redis.splitsKeysBySlot { return try await write(entries, fence: fence) }
        return try await writers.with { try await write(entries, fence: fence, on: $0) }
    }

    /// The same fenced write of many keys, as one transaction on a connection of the
    /// writer's own (WATCH is per connection), in one round trip: `WATCH fence`, a script that
    /// touches the fence unless it holds our token, `MULTI`, `SET key value PXAT expiry NX`
    /// for each key, `PEXPIRE lease`, `EXEC`. `fence` is the key the lease's taker sets to its
    /// token (`RedisLease.acquire(fence:)`) and nothing else changes, so `EXEC` runs only if
    /// the lease was ours at the WATCH and nobody took it since; extending the lease does not
    /// touch the fence, so concurrent writers and the renewer never abort each other. (A
    /// stalled runner's touch can abort the new holder's transaction once: it finds the fence
    /// still its own and sends the batch again.) Plain SETs cost Redis about half what the
    /// same SETs cost from Lua. Keys that existed (their NX refused) are then written by the
    /// Lua script, which keeps a later expiry.
    public func write(_ entries: Entries, fence: KALeaseFence, on connection: RedisConnection) async throws
        -> FencedResult
    {
        let lease = fence.lease
        let fenceKey = fence.tokenKey
        var commands = RedisCommands()
        commands.reserveCapacity(
            bytes: entries.keys.bytes.count + entries.values.bytes.count + entries.count * 64 + 512)
        commands.add(RedisCommand("WATCH", fenceKey))
        commands.add(RedisCommand("EVAL", Self.touchUnlessOurs.source, 1, fenceKey, lease.token))
        commands.add(RedisCommand("MULTI"))
        for index in 0..<entries.count {
            commands.add(arguments: 6)
            commands.argument("SET")
            commands.argument(entries.keys[index])
            commands.argument(entries.values[2 * index])
            commands.argument("PXAT")
            commands.argument(entries.values[2 * index + 1])
            commands.argument("NX")
        }
        commands.add(RedisCommand("PEXPIRE", lease.key, lease.ttl.milliseconds))
        commands.add(RedisCommand("EXEC"))
        for _ in 0..<3 {
            let replies = try await connection.pipeline(commands)
            switch replies.last {
            case .array(let results) where results.count == entries.count + 1:
                var existing = Entries()
                for (index, result) in results.prefix(entries.count).enumerated() where result == .null {
                    existing.append(
                        key: entries.keys[index], value: entries.values[2 * index],
                        expiry: entries.values[2 * index + 1])
                }
                guard existing.count > 0 else { return .written(entries.count) }
                guard case .written = try await write(existing, fence: fence) else { return .leaseLost }
                return .written(entries.count)
            case .null:
                // Nothing was written. Ours no longer, or aborted by a stalled runner's touch.
                guard replies[1] == .integer(1), try await redis.send("GET", fenceKey).string == lease.token else {
                    return .leaseLost
                }
            case .error(let message):
                throw RedisError(.server, operation: "EXEC", message: message)
            default:
                let problem = replies.first { if case .error = $0 { true } else { false } }
                throw RedisError(.server, operation: "EXEC", message: problem?.string ?? "unexpected reply")
            }
        }
        return .leaseLost
    }

    /// 1 if the fence holds our token; otherwise sets it (to itself, or, if it is gone, to an
    /// empty token for a minute), which aborts the transaction that watches it, and returns 0. Sent as EVAL: the SHA cache does not reach
    /// into a pipeline of preformatted commands (its 100-byte source costs nothing here).
    static let touchUnlessOurs = RedisScript(
        name: "ka-touch-unless-ours",
        source: """
            local holder = redis.call('GET', KEYS[1])
            if holder == ARGV[1] then return 1 end
            if holder then
              redis.call('SET', KEYS[1], holder, 'KEEPTTL')
            else
              redis.call('SET', KEYS[1], '', 'PX', 60000)
            end
            return 0
            """)

    public func write(_ entries: Entries) async throws {
        _ = try await write(entries, fence: nil)
    }

    /// How many of `keys` exist: EXISTS of a thousand keys at a time, in one pipeline.
    public func existing(_ keys: [String]) async throws -> Int {
        let commands = stride(from: 0, to: keys.count, by: 1000).map {
            RedisCommand("EXISTS", arguments: Array(keys[$0..<min($0 + 1000, keys.count)]))
        }
        return try await redis.pipeline(commands).reduce(0) { $0 + Int($1.integer ?? 0) }
    }
}

/// Connections of a task's writers for the transactional fenced write (WATCH needs a
/// connection of its own): one per concurrent writer, opened as needed, never reconnecting
/// behind a transaction's back, closed with the task's batch loop.
actor KAWriterConnections {
    private let configuration: RedisConfiguration
    private var idle: [RedisConnection] = []
    private var opened: [RedisConnection] = []

    init(_ configuration: RedisConfiguration) {
        var configuration = configuration
        configuration.retryAfterConnectionLoss = false
        configuration.clientName = configuration.clientName.map { $0 + "-writer" }
        self.configuration = configuration
    }

    func take() async throws -> RedisConnection {
        if let connection = idle.popLast() { return connection }
        let connection = try await RedisConnection.connect(configuration)
        opened.append(connection)
        return connection
    }

    func give(_ connection: RedisConnection) { idle.append(connection) }

    /// `body` on a connection of this set, given back afterwards whatever happens.
    nonisolated func with<T: Sendable>(_ body: (RedisConnection) async throws -> T) async throws -> T {
        let connection = try await take()
        do {
            let value = try await body(connection)
            await give(connection)
            return value
        } catch {
            await give(connection)
            throw error
        }
    }

    func close() async {
        for connection in opened { await connection.close() }
        opened = []
        idle = []
    }
}

/// A KA runner's right to write the live's keys: its lease (`KACache.fence`). On one Redis the
/// writes check the lease itself, and extend it; on a cluster the lease is renewed before a
/// batch and each slot's script checks the copy of the lease's generation in its slot.
public struct KALeaseFence: WriteFence {
    public let lease: RedisLease
    /// The key the lease's taker sets to its token (`RedisLease.acquire(fence:)`), which the
    /// one-Redis transaction watches.
    let tokenKey: String
    /// The copies' name, before the slot's tag.
    let copyName: String
    /// When the copies expire, ms since the epoch.
    let expiresAt: Int64

    public func check(on redis: any RedisClient) async throws {
        try lease.ensureHeld()
        if redis.splitsKeysBySlot { try await lease.renew() }
    }

    public func guarding(_ key: String, on redis: any RedisClient) -> (key: String, argument: String) {
        guard redis.splitsKeysBySlot, let generation = lease.generation else {
            return (lease.key, "lease:\(lease.ttl.milliseconds):\(lease.token)")
        }
        let lifetime = Int(expiresAt - Int64(Date().timeIntervalSince1970 * 1000))
        return (FenceScript.copyKey(copyName, slotOf: key), FenceScript.copyArgument(generation, lifetime: lifetime))
    }

    public var refusal: any Error { lease.refused("Redis refused a write: another runner holds the lease") }
}
