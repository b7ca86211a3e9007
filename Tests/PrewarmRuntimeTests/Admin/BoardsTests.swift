import Foundation
import Kafka
import Redis
import TestSupport
import Testing

@testable import PrewarmRuntime

/// The pod and lag boards: one hash each, read without a scan; a dead pod's entry is left out
/// and removed; a pod that leaves removes its own.
@Suite("Pod and lag boards in Redis", .closesResources)
struct BoardsTests {
    @Test(
        "the pod board shows live pods, drops and deletes a dead pod's entry, and forgets one that left",
        arguments: RedisTopology.allCases)
    func pods(on topology: RedisTopology) async throws {
        let redis = try await topology.connect()
        let board = PodBoard(redis: redis)
        let name = TestEnvironment.uniqueName("pod")
        func record(_ owner: String, seen: Date) -> PodRecord {
            PodRecord(
                worker: "boards-test", owner: owner, admin: "10.0.0.7:8080", group: "g", jobs: ["job"], ready: true,
                problems: [], startedAt: seen, seenAt: seen)
        }
        try await board.publish(record(name + "-live", seen: Date()))
        try await board.publish(record(name + "-dead", seen: Date().addingTimeInterval(-60)))
        let owners = try await PodBoard.read(redis).map(\.owner)
        #expect(owners.contains(name + "-live"))
        #expect(!owners.contains(name + "-dead"), "not written for 60 s: a dead pod")
        #expect(
            try await redis.send("HEXISTS", PodBoard.key, "boards-test|\(name)-dead") == .integer(0),
            "the reader removed it")
        try await board.remove(worker: "boards-test", owner: name + "-live")
        #expect(!(try await PodBoard.read(redis).map(\.owner).contains(name + "-live")))
    }

    @Test(
        "the lag board sums a group's partitions over its pods, drops a stale entry and an empty one",
        arguments: RedisTopology.allCases)
    func lag(on topology: RedisTopology) async throws {
        let redis = try await topology.connect()
        let group = TestEnvironment.uniqueName("lag-group")
        let first = LagBoard(redis: redis, group: group, owner: "pod-1")
        let second = LagBoard(redis: redis, group: group, owner: "pod-2")
        try await first.publish([KafkaTopicPartition("t", 0): 5, KafkaTopicPartition("t", 1): 0])
        try await second.publish([KafkaTopicPartition("t", 2): Int64.max])
        #expect(try await LagBoard.read(redis)[group] == ["t[0]": 5, "t[1]": 0, "t[2]": Int64.max])
        // A pod that died a minute and more ago.
        _ = try await redis.send(
            "HSET", LagBoard.key, "\(group)|pod-3", #"{"at": 1, "lag": {"t[3]": 9}}"#)
        #expect(try await LagBoard.read(redis)[group]?["t[3]"] == nil)
        #expect(try await redis.send("HEXISTS", LagBoard.key, "\(group)|pod-3") == .integer(0))
        try await first.publish([:])
        try await second.publish([:])
        #expect(try await LagBoard.read(redis)[group] == nil, "both left their group")
    }
}
