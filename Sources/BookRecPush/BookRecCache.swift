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
/// - `push:sent:{uid}:{slot}`: `claimed:{push id}|{claimer}` before the push is produced,
///   `sent:{push id}` after its delivery report, 48 h;
/// - `book-rec:out:{day}`: the day's users outside the experiment (the pre-warm found them
///   so; the push skips them without counting a miss), 48 h;
/// - `{prewarm:runs}:book-rec:failed:{period}:{attempt}`: a run's items that failed, retried at its end: the
///   pre-warm's users (once more), an hour's task_data rows (until its send window ends);
/// - `{prewarm:runs}:book-rec:stats:{job}:{period}:{attempt}`: what a run did (a hash of
///   counts).
/// The last two are run-scoped (`JobRuns.runScopedKey`): the run's end moves items out of
/// the one, counts them in the other and in the run's record in one script.
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
    public func failedKey(period: String, attempt: Int) -> String {
        prefix + JobRuns.runScopedKey("book-rec:failed:\(period):\(attempt)")
    }
    public func statsKey(job: String, period: String, attempt: Int) -> String {
        prefix + JobRuns.runScopedKey("book-rec:stats:\(job):\(period):\(attempt)")
    }

    /// Writes the users' recommendations, each for `ttl`, in one script (on a cluster one per
    /// primary, `FencedKeyWrite`); with a fence, none once a newer attempt of the run began
    /// (`StaleAttempt`). Per key its value; shared, the TTL in seconds.
    static let writeScript = FencedKeyWrite(
        name: "book-rec-write", shared: 1, width: 1,
        function: """

            local function write(key, value, ttl) redis.call('SET', key, value, 'EX', ttl) end
            """)

    public func write(
        _ entries: [(user: Int64, value: CachedRecommendation)], ttl: Duration, fence: AttemptFence? = nil
    ) async throws {
        guard !entries.isEmpty else { return }
        try await redis.runFenced(
            Self.writeScript, fence: fence, keys: entries.map { recommendationKey($0.user) },
            shared: [Int64(ttl.components.seconds)]
        ) { index, arguments in arguments.append(entries[index].value.json) }
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
        /// Claimed before by this same push and never marked sent, by a worker that is gone
        /// (its pod died between produce and mark): produce it again, with the same id.
        case unsent = 2
        /// Already sent: skip.
        case sent = 3
        /// Claimed or sent by another push for the slot (the user's row in the other task):
        /// skip, so the user never gets two different pushes.
        case other = 4
        /// Claimed by a worker that is still at work (another consumer of the same batch, or
        /// an older attempt's batch before a forced re-run): wait for it, never send beside it.
        case busy = 5
    }

    /// What a sent key holds: `claimed:{push id}|{claimer}` while the push is being produced,
    /// `sent:{push id}` once its delivery was reported.
    public enum SentMark: String, Sendable {
        case claimed = "claimed:"
        case sent = "sent:"
    }

    /// Who claims: a batch of an attempt, or the finish step's retry; named in the claim so a
    /// later claimer can tell a live claim from a dead one by the claimer's lease.
    public struct Claimer: Sendable, Equatable {
        public let fence: AttemptFence
        /// `{attempt}:{batch}` or `{attempt}:f` (the finish step).
        let tag: String

        public static func batch(_ batch: JobBatch) -> Claimer {
            Claimer(fence: AttemptFence(batch), tag: "\(batch.attempt):\(batch.batch)")
        }

        public static func finishStep(_ run: JobRunProgress) -> Claimer {
            Claimer(
                fence: AttemptFence(job: run.job, period: run.period, attempt: run.attempt), tag: "\(run.attempt):f")
        }
    }

    /// Claims each push for its user and slot: `claimed:{push id}|{claimer}` set if free. A
    /// claim of the same push by a claimer whose lease is gone (`…:batch:{attempt}:{batch}`,
    /// or the run's `…:finish`) is a crash leftover and is taken over; one whose claimer still
    /// holds its lease is busy. Nothing is claimed once a newer attempt of the run began.
    ///
    /// Two steps, each one script per slot (`RedisClient.runFenced`), because the claimers'
    /// leases are run-scoped keys, in another slot than the users' on a cluster: `claimScript`
    /// claims what it can and names the other claimer of each push it cannot; the claimers'
    /// leases are read; `takeOverScript` takes over the pushes of claimers found gone, if
    /// their claim is still the one read.
    ///
    /// KEYS: the fence's guard, then the sent keys. ARGV: fence, claimer, TTL in seconds,
    /// then the push ids. Returns, per key, a `Claim` or the other claimer's tag (a string),
    /// or -1 when fenced.
    static let claimScript = RedisScript(
        name: "book-rec-claim",
        source: FenceScript.lua + """

            if not fenced(KEYS[1], ARGV[1]) then return -1 end
            local mine, ttl = ARGV[2], ARGV[3]
            local result = {}
            for i = 2, #KEYS do
              local id = ARGV[i + 2]
              local ours = '\(SentMark.claimed.rawValue)' .. id .. '|'
              if redis.call('SET', KEYS[i], ours .. mine, 'NX', 'EX', ttl) then
                result[i - 1] = \(Claim.claimed.rawValue)
              else
                local value = redis.call('GET', KEYS[i]) or ''
                if value == '\(SentMark.sent.rawValue)' .. id then
                  result[i - 1] = \(Claim.sent.rawValue)
                elseif value == '\(SentMark.claimed.rawValue)' .. id or string.sub(value, 1, #ours) == ours then
                  local holder = string.sub(value, #ours + 1)
                  if holder ~= mine and holder ~= '' then
                    result[i - 1] = holder
                  else
                    redis.call('SET', KEYS[i], ours .. mine, 'KEEPTTL')
                    result[i - 1] = \(Claim.unsent.rawValue)
                  end
                else
                  result[i - 1] = \(Claim.other.rawValue)
                end
              end
            end
            return result
            """)

    /// Takes over pushes whose claimer is gone, each only if its claim is still the one read
    /// (else it is busy: another claimer took it over meanwhile). KEYS: the fence's guard,
    /// then the sent keys. ARGV: fence, claimer, then per key the push id and the gone
    /// claimer. Returns a `Claim` per key (unsent, sent or busy), or -1 when fenced.
    static let takeOverScript = RedisScript(
        name: "book-rec-take-over",
        source: FenceScript.lua + """

            if not fenced(KEYS[1], ARGV[1]) then return -1 end
            local result = {}
            for i = 2, #KEYS do
              local id, gone = ARGV[2 * i - 1], ARGV[2 * i]
              local ours = '\(SentMark.claimed.rawValue)' .. id .. '|'
              local value = redis.call('GET', KEYS[i]) or ''
              if value == ours .. gone then
                redis.call('SET', KEYS[i], ours .. ARGV[2], 'KEEPTTL')
                result[i - 1] = \(Claim.unsent.rawValue)
              elseif value == '\(SentMark.sent.rawValue)' .. id then
                result[i - 1] = \(Claim.sent.rawValue)
              else
                result[i - 1] = \(Claim.busy.rawValue)
              end
            end
            return result
            """)

    /// Claims each (user, push id) for the slot; throws `StaleAttempt` when a newer attempt of
    /// the run began.
    public func claim(
        _ pushes: [(user: Int64, pushID: String)], slot: String, by claimer: Claimer, ttl: Duration
    ) async throws -> [Claim] {
        guard !pushes.isEmpty else { return [] }
        let keys = pushes.map { sentKey(user: $0.user, slot: slot) }
        var claims = [Claim](repeating: .busy, count: pushes.count)
        var held: [(index: Int, holder: String)] = []
        for (indices, reply) in try await redis.runFenced(
            Self.claimScript, fence: claimer.fence, keys: keys,
            shared: [claimer.tag, Int64(ttl.components.seconds)],
            perKey: { index, arguments in arguments.append(pushes[index].pushID) })
        {
            let values = try answers(reply, "book-rec-claim", count: indices.count)
            for (index, value) in zip(indices, values) {
                if case .bulk(let holder) = value {
                    held.append((index, String(decoding: holder, as: UTF8.self)))
                } else {
                    claims[index] = try claim(value)
                }
            }
        }
        guard !held.isEmpty else { return claims }
        // The other claimers' leases: those still held are busy, the rest are taken over.
        let run = JobRuns.leaseKey(job: claimer.fence.job, period: claimer.fence.period)
        // Checked: an error reply (the run's slot failing over) is not a lease found gone.
        let alive = try await redis.checkedPipeline(
            held.map { RedisCommand("EXISTS", leaseKey(ofClaimer: $0.holder, run: run, fence: claimer.fence)) }
        ).map { $0.integer == 1 }
        let gone = zip(held, alive).filter { !$1 }.map(\.0)
        for (index, _) in held { claims[index] = .busy }
        guard !gone.isEmpty else { return claims }
        for (indices, reply) in try await redis.runFenced(
            Self.takeOverScript, fence: claimer.fence, keys: gone.map { keys[$0.index] }, shared: [claimer.tag],
            perKey: { position, arguments in
                arguments.append(pushes[gone[position].index].pushID)
                arguments.append(gone[position].holder)
            })
        {
            let values = try answers(reply, "book-rec-take-over", count: indices.count)
            for (position, value) in zip(indices, values) { claims[gone[position].index] = try claim(value) }
        }
        return claims
    }

    /// The lease a claimer holds while it works (`{attempt}:{batch}` a batch's, `{attempt}:f`
    /// the finish step's); a tag of no known shape names a key that never exists (gone).
    private func leaseKey(ofClaimer holder: String, run: String, fence: AttemptFence) -> String {
        let parts = holder.split(separator: ":")
        guard parts.count == 2, let attempt = Int(parts[0]) else { return run + ":unknown-claimer" }
        if parts[1] == "f" { return JobRuns.finishKey(job: fence.job, period: fence.period) }
        guard let batch = Int(parts[1]) else { return run + ":unknown-claimer" }
        return JobRuns.batchLeaseKey(job: fence.job, period: fence.period, attempt: attempt, batch: batch)
    }

    private func answers(_ reply: RedisReply, _ script: String, count: Int) throws -> [RedisReply] {
        let values = reply.array ?? []
        guard values.count == count else {
            throw UnknownReply(what: script, reply: "\(values.count) answers for \(count) pushes")
        }
        return values
    }

    private func claim(_ value: RedisReply) throws -> Claim {
        guard let claim = value.integer.flatMap({ Claim(rawValue: Int($0)) }) else {
            throw UnknownReply(what: "book-rec-claim answer", reply: "\(value)")
        }
        return claim
    }

    /// Marks the pushes sent (their delivery reported), keeping each key's TTL.
    public func markSent(_ pushes: [(user: Int64, pushID: String)], slot: String) async throws {
        guard !pushes.isEmpty else { return }
        try await redis.checkedPipeline(
            pushes.map {
                RedisCommand(
                    "SET", sentKey(user: $0.user, slot: slot), SentMark.sent.rawValue + $0.pushID, "XX", "KEEPTTL")
            }
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
        try await redis.checkedPipeline([
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

    /// The items (users of a pre-warm, rows of an hour) a run's end worked after all: out of
    /// its failed set, `counts` added to its hash and the run's record moving them from failed
    /// to done, in one script, so a finish step run again after a crash finds them either
    /// still failed and uncounted, or moved and counted. KEYS: the failed set, the stats hash,
    /// the run's record. ARGV: the number of counts, the field and increment pairs, then the
    /// items.
    static let settleScript = RedisScript(
        name: "book-rec-settle",
        source: JobRuns.recover + """

            local fields = 2 + 2 * tonumber(ARGV[1])
            local moved = 0
            for i = fields, #ARGV, 4000 do
              moved = moved + redis.call('SREM', KEYS[1], unpack(ARGV, i, math.min(i + 3999, #ARGV)))
            end
            if moved == 0 then return 0 end
            for i = 2, fields - 1, 2 do redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1]) end
            redis.call('EXPIRE', KEYS[2], 172800)
            recover(KEYS[3], moved)
            return moved
            """)

    func settle(_ items: [Int64], counts: [String: Int], job: String, period: String, attempt: Int) async throws {
        guard !items.isEmpty else { return }
        let increments = counts.filter { $0.value != 0 }
        var arguments = RedisArguments()
        arguments.append(increments.count)
        for (field, value) in increments {
            arguments.append(field)
            arguments.append(value)
        }
        for item in items { arguments.append(item) }
        _ = try await redis.run(
            Self.settleScript,
            keys: RedisArguments([
                failedKey(period: period, attempt: attempt), statsKey(job: job, period: period, attempt: attempt),
                JobRuns.progressKey(job: job, period: period),
            ]),
            arguments: arguments)
    }
}
