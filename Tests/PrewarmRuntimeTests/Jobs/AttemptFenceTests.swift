import Foundation
import Logging
import Redis
import TestSupport
import Testing

@testable import PrewarmRuntime

@Suite("Fenced writes over keys of many slots", .closesResources)
struct AttemptFenceTests {
    /// Sets each key to its value unless fenced; -1 when fenced.
    static let write = RedisScript(
        name: "test-fenced-write",
        source: FenceScript.lua + """

            if ARGV[1] ~= '' and not fenced(KEYS[1], ARGV[1]) then return -1 end
            for i = 2, #KEYS do redis.call('SET', KEYS[i], ARGV[i], 'EX', 60) end
            return #KEYS - 1
            """)

    private func write(_ keys: [String], _ value: String, fence: AttemptFence?, on redis: any RedisClient)
        async throws -> [(indices: [Int], reply: RedisReply)]
    {
        try await redis.runFenced(Self.write, fence: fence, keys: keys) { _, arguments in arguments.append(value) }
    }

    @Test(
        "a write over 200 keys lands whole, one script per slot on a cluster, and a newer attempt's record refuses it",
        arguments: RedisTopology.allCases)
    func wholeAndFenced(on topology: RedisTopology) async throws {
        let redis = try await topology.connect()
        let job = TestEnvironment.uniqueName("fenced")
        let keys = (1...200).map { "\(job):user:\($0)" }
        let replies = try await write(keys, "a1", fence: AttemptFence(job: job, period: "p", attempt: 1), on: redis)
        #expect(replies.count == (topology == .cluster ? Set(keys.map(RedisKeySlot.of)).count : 1))
        #expect(replies.flatMap(\.indices).sorted() == Array(keys.indices), "every key in exactly one script")
        #expect(replies.allSatisfy { $0.reply.integer == Int64($0.indices.count) })
        #expect(try await redis.mget(keys).allSatisfy { $0 == Array("a1".utf8) })

        // A forced attempt 2 began: the run's record names it; attempt 1 writes nothing more.
        let runs = JobRuns(
            redis: redis, settings: JobRunSettings(), owner: "pod", logger: Logger(label: "test"), alerts: nil)
        for force in [false, true] {
            _ = try await runs.claim(job: job, period: "p", due: Date(), force: force, deadline: nil)
        }
        let old = AttemptFence(job: job, period: "p", attempt: 1)
        await #expect(throws: StaleAttempt.self) {
            let replies = try await write(keys, "late", fence: old, on: redis)
            if replies.contains(where: { $0.reply.integer == -1 }) { throw old.refused }
        }
        _ = try await write(keys, "a2", fence: AttemptFence(job: job, period: "p", attempt: 2), on: redis)
        #expect(try await redis.mget(keys).allSatisfy { $0 == Array("a2".utf8) })
    }

    @Test(
        "on a cluster, a slot the newer attempt wrote refuses the older one even when the record no longer tells (its check passed before)"
    )
    func copyInTheSlot() async throws {
        let redis = try await RedisTopology.cluster.connect()
        let job = TestEnvironment.uniqueName("copy")
        let newer = (1...50).map { "\(job):new:\($0)" }
        _ = try await write(newer, "a2", fence: AttemptFence(job: job, period: "p", attempt: 2), on: redis)
        // No record (as when the older attempt's check ran before the newer one began): only
        // the copies in the slots fence it.
        let older = AttemptFence(job: job, period: "p", attempt: 1)
        await #expect(throws: StaleAttempt.self) { try await write(newer, "a1", fence: older, on: redis) }
        // Each slot's script on its own: every one refuses.
        var replies: [RedisReply] = []
        for group in redis.atomicGroups(of: newer) {
            let guarded = older.guarding(newer[group[0]], on: redis)
            replies.append(
                try await redis.run(
                    Self.write, keys: [guarded.key] + group.map { newer[$0] },
                    arguments: [guarded.argument] + group.map { _ in "a1" }))
        }
        #expect(replies.allSatisfy { $0.integer == -1 }, "refused in every slot attempt 2 wrote")
        #expect(try await redis.mget(newer).allSatisfy { $0 == Array("a2".utf8) }, "nothing overwritten")
        let copy = "prewarm:fence:\(job):p" + RedisKeySlot.tag(forSlot: RedisKeySlot.of(newer[0]))
        #expect(RedisKeySlot.of(copy) == RedisKeySlot.of(newer[0]))
        #expect(try await redis.send("GET", copy).string == "2")
        let ttl = try await redis.send("PTTL", copy).integer ?? -1
        #expect(ttl > 0 && ttl <= AttemptFence.copyLifetime.milliseconds, "the copy expires: \(ttl) ms")
    }

    /// Each key set to its value for the shared TTL, as book-rec declares its write.
    static let keyWrite = FencedKeyWrite(
        name: "test-key-write", shared: 1, width: 1,
        function: """

            local function write(key, value, ttl) redis.call('SET', key, value, 'EX', ttl) end
            """)

    @Test(
        "a declared write lands whole with its shared TTL (one script per primary on a cluster); an older attempt is refused by the slots the newer one wrote, and nothing is overwritten",
        arguments: RedisTopology.allCases)
    func declaredWrite(on topology: RedisTopology) async throws {
        let redis = try await topology.connect()
        let job = TestEnvironment.uniqueName("declared")
        let keys = ((1...199).map { Int64($0) } + [Int64.max]).map { "\(job):user:\($0)" }
        func write(_ value: String, attempt: Int) async throws {
            try await redis.runFenced(
                Self.keyWrite, fence: AttemptFence(job: job, period: "p", attempt: attempt), keys: keys, shared: [120]
            ) { index, arguments in arguments.append("\(value)-\(index)") }
        }
        try await write("a2", attempt: 2)
        #expect(try await redis.mget(keys) == keys.indices.map { Array("a2-\($0)".utf8) }, "every key, its own value")
        let ttl = try await redis.send("TTL", keys.last!).integer ?? -1
        #expect(ttl > 100 && ttl <= 120, "the shared TTL: \(ttl) s")
        // No run record names attempt 2 (as when attempt 1's check ran before it began): only
        // the fence's copies refuse attempt 1; on one Redis the missing record lets it write.
        if topology == .cluster {
            await #expect(throws: StaleAttempt.self) { try await write("a1", attempt: 1) }
            #expect(try await redis.mget(keys) == keys.indices.map { Array("a2-\($0)".utf8) }, "nothing overwritten")
        }
    }

    @Test("every slot has a tag of its own, and a key put beside another shares its slot")
    func tags() {
        for slot in [0, 1, 5460, 5461, 10922, 16383] {
            #expect(RedisKeySlot.of("x" + RedisKeySlot.tag(forSlot: slot)) == slot)
        }
        #expect(RedisKeySlot.tagged("fence", besides: "ka:{shop:7}:u:1") == "fence{shop:7}")
        #expect(RedisKeySlot.tagged("{p:runs}:a:batches", besides: "{p:runs}:a") == "{p:runs}:a:batches", "as it is")
        #expect(
            RedisKeySlot.tagged("STORE_OPEN_IDS", besides: "STORE_RECOMMEND_DEFAULT")
                == "STORE_OPEN_IDS{STORE_RECOMMEND_DEFAULT}")
        for key in ["rec:later_read:9223372036854775807", "a", "STORE_OPEN_IDS", "odd{}key", "odd}{key"] {
            #expect(RedisKeySlot.of(RedisKeySlot.tagged("fence", besides: key)) == RedisKeySlot.of(key))
        }
    }
}
