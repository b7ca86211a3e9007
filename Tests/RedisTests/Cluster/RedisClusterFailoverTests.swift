import Foundation
import Redis
import TestSupport
import Testing

@Suite("The Redis Cluster client through a failover", .closesResources)
struct RedisClusterFailoverTests {
    @Test("a primary killed: calls fail as transient, then the promoted replica answers with every replicated key")
    func primaryKilled() async throws {
        let cluster = try PrivateRedisCluster()
        closeAfterTest { await cluster.destroy() }
        try await cluster.start()
        let password = try TestEnvironment.require("PREWARM_REDIS_PASSWORD")
        let template = RedisConfiguration(password: password, connectTimeout: 0.5, commandTimeout: 2)
        let client = try await RedisClusterClient.connect(seeds: cluster.nodes, configuration: template)
        closeAfterTest { await client.close() }

        let keys = (0..<300).map { "failover:\($0):\(Int64.max - Int64($0))" }
        _ = try await client.pipeline(keys.enumerated().map { RedisCommand("SET", $1, "v\($0)") })
        // Every write on its replica before the crash (replication is asynchronous).
        let map = client.slotMap
        // (A replica may still be in its first sync, just after the cluster was made.)
        for primary in map.primaries {
            var configuration = template
            configuration.endpoint = .tcp(host: primary.host, port: primary.port)
            configuration.commandTimeout = 5
            let connection = try await RedisConnection.connect(configuration)
            closeAfterTest { await connection.close() }
            try await eventually(timeout: .seconds(30), "\(primary)'s writes on its replica") {
                try await connection.send("WAIT", 1, 1000) == .integer(1)
            }
        }
        let victim = try #require(map.primary(of: RedisKeySlot.of(keys[0])))
        let killedAt = ContinuousClock.now
        try await cluster.kill(victim.port)

        var values: [RedisReply] = []
        var failures = 0
        while ContinuousClock.now - killedAt < .seconds(30) {
            do {
                values = try await client.pipeline(keys.map { RedisCommand("GET", $0) })
                let refused = values.compactMap { reply -> String? in
                    if case .error(let message) = reply { return message }
                    return nil
                }
                if refused.isEmpty { break }
                #expect(
                    refused.allSatisfy { RedisError(.server, operation: "GET", message: $0).isTransient },
                    "\(refused.first ?? "")")
            } catch let error as RedisError {
                #expect(error.isTransient, "\(error)")
            }
            failures += 1
            try await Task.sleep(for: .milliseconds(100))
        }
        let recovered = ContinuousClock.now - killedAt
        if values.map(\.string) != (0..<300).map({ "v\($0)" }) {
            // What each node holds and thinks, to tell a lost write from a wrong route.
            for node in cluster.nodes where node != victim {
                var configuration = template
                configuration.endpoint = .tcp(host: node.host, port: node.port)
                guard let connection = try? await RedisConnection.connect(configuration) else { continue }
                let size = try? await connection.send("DBSIZE")
                let role = try? await connection.send("ROLE")
                let nodes = try? await connection.send("CLUSTER", "NODES")
                print(
                    "failover diagnosis: \(node) dbsize \(String(describing: size)) role \(String(describing: role?.array?.first)) nodes:\n\(nodes?.string ?? "")"
                )
                await connection.close()
            }
            print("failover diagnosis: map \(client.slotMap.ranges.map { "\($0.slots) \($0.primary)" })")
        }
        #expect(values.map(\.string) == (0..<300).map { "v\($0)" }, "every replicated key, from the promoted replica")
        #expect(failures > 0, "the killed primary's slots were unavailable for a while")
        #expect(recovered < .seconds(25), "recovered \(recovered) after the kill (node timeout 5 s)")
        let promoted = try #require(client.slotMap.primary(of: RedisKeySlot.of(keys[0])))
        #expect(promoted != victim && cluster.nodes.contains(promoted) && !map.primaries.contains(promoted))
    }
}
