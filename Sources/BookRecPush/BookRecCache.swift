import Foundation
import PrewarmRuntime
import Redis

/// What `rec:later_read:{uid}` holds (seed 000's `CachedRecData`).
public struct CachedRecommendation: Sendable, Codable, Equatable, FlatDecodable {
    public var recID: String
    public var recType: String
    public var materialID: String
    public var traceID: String

    public init(recID: String, recType: String, materialID: String, traceID: String) {
        self.recID = recID
        self.recType = recType
        self.materialID = materialID
        self.traceID = traceID
    }

    enum CodingKeys: String, CodingKey {
        case recID = "rec_id"
        case recType = "rec_type"
        case materialID = "material_id"
        case traceID = "trace_id"
    }

    init?(flat: [String: String]) {
        guard let recID = flat["rec_id"], let recType = flat["rec_type"], let materialID = flat["material_id"],
            let traceID = flat["trace_id"]
        else { return nil }
        self.init(recID: recID, recType: recType, materialID: materialID, traceID: traceID)
    }

    /// The cached value: the same JSON `Codable` writes, built without the generic encoder.
    var json: [UInt8] {
        FlatJSON.Writer.object([
            "rec_id": recID, "rec_type": recType, "material_id": materialID, "trace_id": traceID,
        ])
    }

    public var recommendation: Recommendation {
        Recommendation(recID: recID, recType: recType, materialID: materialID)
    }
}

/// The push's keys in Redis (README and topics.md):
/// - `rec:later_read:{uid}`: the pre-warmed recommendation, 24 h;
/// - `push:sent:{uid}:{slot}`: `claimed:{push id}` before the push is produced, `sent:{push
///   id}` after its delivery report, 48 h;
/// - `book-rec:out:{day}`: the day's users outside the experiment (the pre-warm found them
///   so; the push skips them without counting a miss), 48 h;
/// - `book-rec:failed:{period}:{attempt}`: the pre-warm's users that failed, for the final
///   retry at the run's end;
/// - `book-rec:stats:{job}:{period}:{attempt}`: what a run did (a hash of counts).
public struct BookRecCache: Sendable {
    public let redis: any RedisClient
    public let prefix: String

    public init(redis: any RedisClient, prefix: String = "") {
        self.redis = redis
        self.prefix = prefix
    }

    public func recommendationKey(_ user: Int64) -> String { "\(prefix)rec:later_read:\(user)" }
    public func sentKey(user: Int64, slot: String) -> String { "\(prefix)push:sent:\(user):\(slot)" }
    public func outKey(day: String) -> String { "\(prefix)book-rec:out:\(day)" }
    func failedKey(period: String, attempt: Int) -> String { "\(prefix)book-rec:failed:\(period):\(attempt)" }
    public func statsKey(job: String, period: String, attempt: Int) -> String {
        "\(prefix)book-rec:stats:\(job):\(period):\(attempt)"
    }

    /// Writes the users' recommendations, each for `ttl`, in one pipeline.
    public func write(_ entries: [(user: Int64, value: CachedRecommendation)], ttl: Duration) async throws {
        guard !entries.isEmpty else { return }
        let seconds = Int(ttl.components.seconds)
        let commands = entries.map {
            RedisCommand("SET", recommendationKey($0.user), $0.value.json, "EX", seconds)
        }
        for reply in try await redis.pipeline(commands) {
            if case .error(let message) = reply { throw RedisError(.server, operation: "SET", message: message) }
        }
    }

    /// The users' cached recommendations in one MGET (nil: a miss, or a value that is not
    /// the documented JSON).
    public func read(_ users: [Int64]) async throws -> [CachedRecommendation?] {
        try await redis.mget(users.map(recommendationKey)).map { value in
            value.flatMap { FlatJSON.decode(CachedRecommendation.self, $0) }
        }
    }

    /// Where a user's push for a slot stands, as the claim found it.
    public enum Claim: Int, Sendable {
        /// Claimed now: produce it.
        case claimed = 1
        /// Claimed before by this same push, never marked sent (a crash between produce and
        /// mark): produce it again, with the same id.
        case unsent = 2
        /// Already sent: skip.
        case sent = 3
        /// Claimed or sent by another push for the slot (the user's row in the other task):
        /// skip, so the user never gets two different pushes.
        case other = 4
    }

    /// KEYS: the sent keys. ARGV: the push ids, then the TTL in seconds.
    static let claimScript = RedisScript(
        name: "book-rec-claim",
        source: """
            local ttl = ARGV[#ARGV]
            local result = {}
            for i, key in ipairs(KEYS) do
              local id = ARGV[i]
              if redis.call('SET', key, 'claimed:' .. id, 'NX', 'EX', ttl) then
                result[i] = 1
              else
                local value = redis.call('GET', key) or ''
                if value == 'claimed:' .. id then result[i] = 2
                elseif value == 'sent:' .. id then result[i] = 3
                else result[i] = 4 end
              end
            end
            return result
            """)

    /// Claims each (user, push id) for the slot, in one script.
    public func claim(_ pushes: [(user: Int64, pushID: String)], slot: String, ttl: Duration) async throws -> [Claim] {
        guard !pushes.isEmpty else { return [] }
        var keys = RedisArguments()
        var arguments = RedisArguments()
        for push in pushes {
            keys.append(sentKey(user: push.user, slot: slot))
            arguments.append(push.pushID)
        }
        arguments.append(Int64(ttl.components.seconds))
        let reply = try await redis.run(Self.claimScript, keys: keys, arguments: arguments)
        let values = reply.array ?? []
        guard values.count == pushes.count else {
            throw RedisError(.server, operation: "book-rec-claim", message: "expected \(pushes.count) answers")
        }
        return values.map { Claim(rawValue: Int($0.integer ?? 4)) ?? .other }
    }

    /// Marks the pushes sent (their delivery reported), keeping each key's TTL.
    public func markSent(_ pushes: [(user: Int64, pushID: String)], slot: String) async throws {
        guard !pushes.isEmpty else { return }
        _ = try await redis.pipeline(
            pushes.map { RedisCommand("SET", sentKey(user: $0.user, slot: slot), "sent:" + $0.pushID, "XX", "KEEPTTL") }
        )
    }

    /// A batch's counts into its run's hash, kept two days, once per batch: a batch worked
    /// again (its pod died before recording it) adds nothing more. Its `failed` users (a
    /// pre-warm's) join the run's failed set with them. True when counted now.
    @discardableResult
    public func count(
        _ counts: [String: Int], failed: [Int64] = [], batch: Int, job: String, period: String, attempt: Int
    ) async throws -> Bool {
        try await BatchTally.add(
            counts.filter { $0.value != 0 }.map { ($0.key, Int64($0.value)) }, batch: batch,
            to: statsKey(job: job, period: period, attempt: attempt), ttl: .seconds(2 * 86_400),
            members: failed, into: failed.isEmpty ? nil : failedKey(period: period, attempt: attempt), on: redis)
    }

    public func counts(job: String, period: String, attempt: Int) async throws -> [String: Int] {
        let flat = try await redis.send("HGETALL", statsKey(job: job, period: period, attempt: attempt)).array ?? []
        var counts: [String: Int] = [:]
        for index in stride(from: 0, to: flat.count - 1, by: 2) {
            if let name = flat[index].string, let value = flat[index + 1].string.flatMap({ Int($0) }) {
                counts[name] = value
            }
        }
        return counts
    }

    /// Records the day's users outside the experiment.
    func recordOut(_ users: [Int64], day: String) async throws {
        try await add(users, to: outKey(day: day))
    }

    /// Adds the users to the set at `key`, which then lives two days.
    private func add(_ users: [Int64], to key: String) async throws {
        guard !users.isEmpty else { return }
        _ = try await redis.pipeline([
            RedisCommand("SADD", arguments: [key] + users.map(String.init)), RedisCommand("EXPIRE", key, 2 * 86_400),
        ])
    }

    /// Which of `users` the day's pre-warm found outside the experiment.
    func areOut(_ users: [Int64], day: String) async throws -> [Bool] {
        guard !users.isEmpty else { return [] }
        let reply = try await redis.send(
            RedisCommand("SMISMEMBER", arguments: [outKey(day: day)] + users.map(String.init)))
        return (reply.array ?? []).map { $0.integer == 1 }
    }

    func failed(period: String, attempt: Int) async throws -> [Int64] {
        (try await redis.send("SMEMBERS", failedKey(period: period, attempt: attempt)).array ?? [])
            .compactMap { $0.string.flatMap { Int64($0) } }.sorted()
    }

    /// The users a run's end pre-warmed after all: out of its failed set, and `counts` added
    /// to its hash, in one transaction, so a finish step run again after a crash finds
    /// them either still failed and uncounted, or moved and counted.
    func settle(_ users: [Int64], counts: [String: Int], job: String, period: String, attempt: Int) async throws {
        guard !users.isEmpty else { return }
        let key = statsKey(job: job, period: period, attempt: attempt)
        try await redis.transaction(
            [RedisCommand("SREM", arguments: [failedKey(period: period, attempt: attempt)] + users.map(String.init))]
                + counts.filter { $0.value != 0 }.map { RedisCommand("HINCRBY", key, $0.key, $0.value) }
                + [RedisCommand("EXPIRE", key, 2 * 86_400)])
    }
}
