import Redis
import TestSupport
import Testing

@Suite("Pipelines whose replies must all succeed", .closesResources)
struct RedisCheckedPipelineTests {
    @Test(
        "an error reply in a checked pipeline is thrown, naming the command; a plain pipeline hands it back",
        arguments: RedisTopology.allCases)
    func errorThrown(on topology: RedisTopology) async throws {
        let redis = try await topology.connect()
        let key = TestEnvironment.uniqueName("checked")
        let commands = [RedisCommand("SET", key, "1", "EX", 60), RedisCommand("LPUSH", key, "x")]
        let error = await #expect(throws: RedisError.self) { try await redis.checkedPipeline(commands) }
        #expect(error?.message.hasPrefix("WRONGTYPE") == true && error?.operation == "LPUSH")
        let replies = try await redis.pipeline(commands)
        #expect(replies[0] == .status("OK"))
        guard case .error = replies[1] else {
            Issue.record("a plain pipeline should hand the error back in place: \(replies[1])")
            return
        }
    }
}
