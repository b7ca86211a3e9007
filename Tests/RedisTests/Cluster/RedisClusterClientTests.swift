import Redis
import TestSupport
import Testing

@Suite("The Redis Cluster client against the local cluster", .closesResources, .serialized)
struct RedisClusterClientTests {
    func client() async throws -> RedisClusterClient {
        let nodes = try TestEnvironment.redisClusterNodes()
        let client = try await RedisClusterClient.connect(
            seeds: nodes, configuration: try TestEnvironment.redis(node: nodes[0]))
        closeAfterTest { await client.close() }
        return client
    }

    @Test("one pipeline over every primary: each command on its key's node, replies in the caller's order")
    func pipelineAcrossPrimaries() async throws {
        let client = try await client()
        let prefix = TestEnvironment.uniqueName("cluster")
        let keys = (0..<300).map { "\(prefix):\($0)" }
        var commands = keys.enumerated().map { RedisCommand("SET", $0.element, "v\($0.offset)", "EX", 600) }
        commands += keys.map { RedisCommand("GET", $0) }
        let replies = try await client.pipeline(commands)
        #expect(replies.prefix(300).allSatisfy { $0 == .status("OK") })
        #expect(replies.suffix(300).map(\.string) == (0..<300).map { "v\($0)" })
        // Spread over the three primaries, each holding the keys of its slots.
        let map = client.slotMap
        var perNode: [RedisSlotMap.Node: Int] = [:]
        for key in keys { perNode[map.primary(of: RedisKeySlot.of(key))!, default: 0] += 1 }
        #expect(perNode.count == 3 && perNode.values.allSatisfy { $0 > 50 }, "\(perNode)")
        #expect(Set(try await client.keys(matching: "\(prefix):*")) == Set(keys), "SCAN of every primary")
        for (node, count) in perNode {
            let direct = try await RedisConnection.connect(try TestEnvironment.redis(node: node))
            let found = try await direct.pipeline(keys.map { RedisCommand("EXISTS", $0) }).filter { $0 == .integer(1) }
            await direct.close()
            #expect(found.count == count, "\(node) holds its own keys")
        }
    }

    @Test(
        "keys of one hash tag go together; an MGET or EXISTS across slots is split; a transaction or script across slots is refused"
    )
    func hashTagsAndCrossSlot() async throws {
        let client = try await client()
        let tag = "{\(TestEnvironment.uniqueName("tag"))}"
        try await client.transaction([
            RedisCommand("SET", "\(tag):a", "1", "EX", 600), RedisCommand("SET", "\(tag):b", "2", "EX", 600),
        ])
        #expect(
            try await client.mget(["\(tag):a", "\(tag):b", "\(tag):c"]).map {
                $0.map { String(decoding: $0, as: UTF8.self) }
            } == ["1", "2", nil])
        let script = RedisScript(name: "sum", source: "return redis.call('GET', KEYS[1]) + redis.call('GET', KEYS[2])")
        #expect(try await client.run(script, keys: ["\(tag):a", "\(tag):b"]) == .integer(3))

        let apart = ["cross:\(tag):x", "cross:\(tag):y"].map { $0.replacingOccurrences(of: "{", with: "(") }
        #expect(RedisKeySlot.of(apart[0]) != RedisKeySlot.of(apart[1]))
        // An MGET over slots is split by slot, its values back in the caller's order.
        let many = (0..<200).map { "\(tag):many:\($0)".replacingOccurrences(of: "{", with: "(") }
        _ = try await client.pipeline(many.enumerated().map { RedisCommand("SET", $1, "m\($0)", "EX", 600) })
        let asked = many + ["\(tag):a", "absent:\(tag)"]
        let values = try await client.mget(asked).map { $0.map { String(decoding: $0, as: UTF8.self) } }
        #expect(values == (0..<200).map { "m\($0)" } + ["1", nil])
        #expect(Set(many.map { RedisKeySlot.of($0) }).count > 100, "spread over many slots")
        // So are the commands that count keys, their counts summed.
        #expect(try await client.send(RedisCommand("EXISTS", arguments: asked)) == .integer(201))
        #expect(try await client.send(RedisCommand("DEL", arguments: Array(many.prefix(50)))) == .integer(50))
        #expect(try await client.send(RedisCommand("EXISTS", arguments: many)) == .integer(150))
        for call in [
            { _ = try await client.transaction(apart.map { RedisCommand("SET", $0, "1") }) },
            { _ = try await client.run(script, keys: apart) },
        ] as [@Sendable () async throws -> Void] {
            let error = await #expect(throws: RedisError.self) { try await call() }
            #expect(error?.code == .crossSlot && error?.isTransient == false, "\(String(describing: error))")
        }
    }

    @Test("a slot migrating between primaries: ASK followed for a key already moved, MOVED after, nothing lost")
    func slotMigration() async throws {
        let client = try await client()
        let tag = "{\(TestEnvironment.uniqueName("moving"))}"
        let slot = RedisKeySlot.of(tag)
        let map = client.slotMap
        let source = try #require(map.primary(of: slot))
        let target = try #require(map.primaries.first { $0 != source })
        let from = try await RedisConnection.connect(try TestEnvironment.redis(node: source))
        let to = try await RedisConnection.connect(try TestEnvironment.redis(node: target))
        closeAfterTest {
            await from.close()
            await to.close()
        }
        let sourceID = try #require(try await from.send("CLUSTER", "MYID").string)
        let targetID = try #require(try await to.send("CLUSTER", "MYID").string)
        try await client.send("SET", "\(tag):stays", "old", "EX", 600)
        try await client.send("SET", "\(tag):moves", "early", "EX", 600)

        try await to.send("CLUSTER", "SETSLOT", slot, "IMPORTING", sourceID)
        try await from.send("CLUSTER", "SETSLOT", slot, "MIGRATING", targetID)
        // One key moved already: the source answers ASK for it, the client follows.
        try await from.send(
            RedisCommand(
                "MIGRATE", target.host, target.port, "", 0, 5000, "AUTH",
                try TestEnvironment.require("PREWARM_REDIS_PASSWORD"),
                "KEYS", "\(tag):moves"))
        #expect(try await client.send("GET", "\(tag):moves").string == "early")
        #expect(try await client.send("GET", "\(tag):stays").string == "old", "still on the source")
        #expect(client.slotMap.primary(of: slot) == source, "ASK does not change the map")

        // The rest moved and the slot handed over: the old owner answers MOVED, the map follows.
        // Every key of the slot moves, as a reshard moves them: tests running beside this one
        // may have keys in the same slot, and a node keeps a slot that still holds keys.
        while true {
            let keys = try await from.send("CLUSTER", "GETKEYSINSLOT", slot, 100).array?.compactMap(\.bytes) ?? []
            guard !keys.isEmpty else { break }
            var migrate = RedisArguments()
            for argument in [target.host, String(target.port), "", "0", "5000", "AUTH"] { migrate.append(argument) }
            migrate.append(try TestEnvironment.require("PREWARM_REDIS_PASSWORD"))
            migrate.append("KEYS")
            for key in keys { migrate.append(key) }
            try await from.send(RedisCommand("MIGRATE", arguments: migrate))
        }
        for node in map.primaries {
            let connection = try await RedisConnection.connect(try TestEnvironment.redis(node: node))
            try await connection.send("CLUSTER", "SETSLOT", slot, "NODE", targetID)
            await connection.close()
        }
        try await Task.sleep(for: .milliseconds(250))  // past the client's refresh interval
        let replies = try await client.pipeline([
            RedisCommand("GET", "\(tag):stays"), RedisCommand("SET", "\(tag):new", "v", "EX", 600),
            RedisCommand("GET", "\(tag):moves"),
        ])
        #expect(replies == [.bulk(Array("old".utf8)), .status("OK"), .bulk(Array("early".utf8))])
        #expect(client.slotMap.primary(of: slot) == target)
        #expect(try await to.send("GET", "\(tag):new").string == "v", "written on the new owner")
    }
}
