import Redis
import TestSupport
import Testing

/// Serialized: one case's SCRIPT FLUSH must not land inside the other's checks.
@Suite("Lua scripts by SHA", .closesResources, .serialized)
struct RedisScriptTests {
    static let countOnce = RedisScript(
        name: "count-once",
        source: """
            if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then
              return redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
            end
            return tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
            """)

    private func evalshaCalls(_ redis: any RedisClient) async throws -> Int {
        let info = try await redis.send("INFO", "commandstats").string ?? ""
        guard let line = info.split(separator: "\r\n").first(where: { $0.hasPrefix("cmdstat_evalsha:") }),
            let calls = line.split(separator: ",").first?.split(separator: "=").last
        else { return 0 }
        return Int(calls) ?? 0
    }

    @Test("runs by SHA, and again after SCRIPT FLUSH without the caller noticing", arguments: RedisTransport.allCases)
    func bySHAAfterFlush(_ transport: RedisTransport) async throws {
        let redis = try await transport.connect(try TestEnvironment.redis())
        closeAfterTest { await redis.close() }
        let day = TestEnvironment.uniqueName("day")
        let month = TestEnvironment.uniqueName("month")
        let sha = try #require(try await redis.send("SCRIPT", "LOAD", Self.countOnce.source).string)
        let before = try await evalshaCalls(redis)
        #expect(try await redis.run(Self.countOnce, keys: [day, month], arguments: ["u1"]) == .integer(1))
        #expect(try await redis.run(Self.countOnce, keys: [day, month], arguments: ["u1"]) == .integer(1))
        #expect(try await evalshaCalls(redis) >= before + 2)

        try await redis.send("SCRIPT", "FLUSH")
        #expect(try await redis.send("SCRIPT", "EXISTS", sha) == .array([.integer(0)]))
        #expect(try await redis.run(Self.countOnce, keys: [day + "b", month], arguments: ["u1"]) == .integer(2))
        #expect(
            try await redis.send("SCRIPT", "EXISTS", sha) == .array([.integer(1)]),
            "the run cached the script again, so later runs go by SHA")
        try await redis.send("DEL", day, day + "b", month)
    }

    @Test("a script error is thrown with the script's name", arguments: RedisTransport.allCases)
    func scriptError(_ transport: RedisTransport) async throws {
        let redis = try await transport.connect(try TestEnvironment.redis())
        closeAfterTest { await redis.close() }
        let broken = RedisScript(name: "broken", source: "return redis.call('NOSUCHCOMMAND')")
        let error = await #expect(throws: RedisError.self) { try await redis.run(broken) }
        #expect(error?.code == .server)
        #expect(error?.description.contains("broken") == true)
    }
}
