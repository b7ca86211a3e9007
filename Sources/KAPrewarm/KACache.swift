import Foundation
import PrewarmRuntime
import Redis

/// The key-account cache in Redis (README and topics.md):
/// - `ka:shop:{shopId}`, `ka:shop:{shopId}:staff`, `ka:shop:{shopId}:products`,
///   `ka:shop:{shopId}:marketing`: the shop's JSON;
/// - `ka:user:{shopId}:{userId}`: a shop user's JSON;
/// - `prewarm:ka:{liveId}:lock`: the lease of the live's pre-warm (its holder's token);
/// - `prewarm:ka:{liveId}:done`: the success flag, until the stream ends.
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
    public func userKey(shop: Int64, user: Int64) -> String { "\(prefix)ka:user:\(shop):\(user)" }
    public func leaseKey(live: Int64) -> String { "\(prefix)prewarm:ka:\(live):lock" }
    public func doneKey(live: Int64) -> String { "\(prefix)prewarm:ka:\(live):done" }
    func riskKey(live: Int64) -> String { "\(prefix)prewarm:ka:\(live):deadline-alerted" }
    var rateKey: String { "\(prefix)prewarm:ka:rate" }

    /// Users per second per writer that the last pre-warm measured (for the deadline check
    /// of a task being queued); nil before the first.
    public func lastRate() async throws -> Double? {
        try await redis.send("GET", rateKey).string.flatMap(Double.init)
    }

    func recordRate(_ perWriter: Double) async throws {
        try await redis.send("SET", rateKey, String(format: "%.1f", perWriter), "EX", 30 * 86_400)
    }

    /// Writes keys only while the lease is ours, and extends it: fencing at the store, so a
    /// holder that stalled past its lease cannot write a single key after another took over.
    /// KEYS: the lease, then the keys. ARGV: token, lease ms, then per key its value and
    /// its expiry (ms since the epoch). A key expiring later than that keeps its expiry.
    /// Returns the number of keys written, or -1 when the lease is not ours.
    static let fencedWrite = RedisScript(
        name: "ka-fenced-write",
        source: """
            if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
            redis.call('PEXPIRE', KEYS[1], ARGV[2])
            for i = 2, #KEYS do
              local value = ARGV[2 * i - 1]
              local expiry = tonumber(ARGV[2 * i])
              if redis.call('PEXPIRETIME', KEYS[i]) > expiry then
                redis.call('SET', KEYS[i], value, 'KEEPTTL')
              else
                redis.call('SET', KEYS[i], value, 'PXAT', expiry)
              end
            end
            return #KEYS - 1
            """)

    /// The same writes without a lease (the retry drainer's: the data is the same whoever
    /// writes it). KEYS: the keys. ARGV: per key its value and expiry.
    static let write = RedisScript(
        name: "ka-write",
        source: """
            for i = 1, #KEYS do
              local value = ARGV[2 * i - 1]
              local expiry = tonumber(ARGV[2 * i])
              if redis.call('PEXPIRETIME', KEYS[i]) > expiry then
                redis.call('SET', KEYS[i], value, 'KEEPTTL')
              else
                redis.call('SET', KEYS[i], value, 'PXAT', expiry)
              end
            end
            return #KEYS
            """)

    /// Keys and values ready for one write: arguments laid end to end in two buffers.
    public struct Entries: Sendable {
        var keys = RedisArguments()
        var values = RedisArguments()
        public private(set) var count = 0

        public init() {}

        public mutating func append(key: String, value: some RedisArgument, expiry: Int64) {
            keys.append(key)
            values.append(value)
            values.append(expiry)
            count += 1
        }
    }

    public enum FencedResult: Sendable, Equatable {
        case written(Int)
        case leaseLost
    }

    public func write(_ entries: Entries, lease: RedisLease) async throws -> FencedResult {
        var keys = RedisArguments()
        keys.append(lease.key)
        keys.append(contentsOf: entries.keys)
        var arguments = RedisArguments()
        arguments.append(lease.token)
        arguments.append(lease.ttl.milliseconds)
        arguments.append(contentsOf: entries.values)
        let written = try await redis.run(Self.fencedWrite, keys: keys, arguments: arguments).integer ?? -1
        return written < 0 ? .leaseLost : .written(Int(written))
    }

    public func write(_ entries: Entries) async throws {
        _ = try await redis.run(Self.write, keys: entries.keys, arguments: entries.values)
    }

    /// How many of `keys` exist.
    public func existing(_ keys: [String]) async throws -> Int {
        var total = 0
        for chunk in stride(from: 0, to: keys.count, by: 1000) {
            total += Int(
                try await redis.send(RedisCommand("EXISTS", arguments: Array(keys[chunk..<min(chunk + 1000, keys.count)])))
                    .integer ?? 0)
        }
        return total
    }
}

extension Duration {
    var milliseconds: Int {
        Int(components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000)
    }
}
