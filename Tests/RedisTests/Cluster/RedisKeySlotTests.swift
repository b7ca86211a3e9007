import Redis
import TestSupport
import Testing

@Suite("Redis Cluster's key slots and slot map", .closesResources)
struct RedisKeySlotTests {
    @Test(
        "CRC16 of the key, or of its hash tag: the first {…} that is not empty",
        arguments: [
            ("123456789", 12_739),  // the CRC16-XMODEM check value 0x31C3, mod 16384
            ("", 0),
            ("{user1000}.following", RedisKeySlot.of("user1000")),
            ("{user1000}.followers", RedisKeySlot.of("user1000")),
            ("foo{}{bar}", RedisKeySlot.of("foo{}{bar}")),  // an empty first tag: the whole key
            ("foo{{bar}}zap", RedisKeySlot.of("{bar")),
            ("foo{bar}{zap}", RedisKeySlot.of("bar")),
            ("no{close", RedisKeySlot.of("no{close")),
        ])
    func slots(key: String, slot: Int) {
        #expect(RedisKeySlot.of(key) == slot)
        #expect(RedisKeySlot.of(bytes: Array(key.utf8)) == slot)
    }

    @Test("every slot the local cluster computes for a key is ours, and its map covers every slot with 3 primaries")
    func againstTheCluster() async throws {
        let nodes = try TestEnvironment.redisClusterNodes()
        let connection = try await RedisConnection.connect(try TestEnvironment.redis(node: nodes[0]))
        closeAfterTest { await connection.close() }
        var keys = (0..<500).map { "key:\($0):\(Int64.max - Int64($0))" }
        keys += ["ka:{shop:7:b3}:user:42", "{}", "{", "}", "a{b}c", "读{书}", String(repeating: "x", count: 1000)]
        let replies = try await connection.pipeline(keys.map { RedisCommand("CLUSTER", "KEYSLOT", $0) })
        for (key, reply) in zip(keys, replies) {
            #expect(reply.integer.map(Int.init) == RedisKeySlot.of(key), "\(key.prefix(40))")
        }

        let map = try RedisSlotMap(clusterSlots: try await connection.send("CLUSTER", "SLOTS"), reachedAt: nodes[0])
        #expect(map.uncovered == 0)
        #expect(map.primaries.count == 3)
        // A replica shows in CLUSTER SLOTS only once it has replicated something; CLUSTER
        // NODES names every node.
        let roles = (try await connection.send("CLUSTER", "NODES").string ?? "").split(separator: "\n").map {
            $0.split(separator: " ")[2]
        }
        #expect(roles.filter { $0.contains("master") }.count == 3 && roles.filter { $0.contains("slave") }.count == 3)
        #expect(Set(map.primaries).isSubset(of: Set(nodes)))
        // The node CLUSTER KEYSLOT's slot maps to answers the key; another primary refuses it (MOVED).
        let key = "slot-check"
        let owner = try #require(map.primary(of: RedisKeySlot.of(key)))
        let other = try #require(map.primaries.first { $0 != owner })
        let right = try await RedisConnection.connect(try TestEnvironment.redis(node: owner))
        let wrong = try await RedisConnection.connect(try TestEnvironment.redis(node: other))
        closeAfterTest {
            await right.close()
            await wrong.close()
        }
        #expect(try await right.pipeline([RedisCommand("GET", key)]) == [.null])
        let refused = try await wrong.pipeline([RedisCommand("GET", key)])
        #expect(refused.first?.isMoved == true, "\(refused)")
    }
}

extension RedisReply {
    fileprivate var isMoved: Bool {
        if case .error(let message) = self { return message.hasPrefix("MOVED ") }
        return false
    }
}
