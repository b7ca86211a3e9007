import Kafka
import Testing

@testable import PrewarmRuntime

@Suite("Partition bookkeeping")
struct PartitionStatesTests {
    let p0 = KafkaTopicPartition("t", 0)
    let p1 = KafkaTopicPartition("t", 1)

    func message(_ partition: Int32, _ offset: Int64) -> KafkaMessage {
        KafkaMessage(topic: "t", partition: partition, offset: offset, key: nil, value: [], headers: [])
    }

    @Test("messages are grouped per partition in order; unassigned partitions are ignored")
    func grouping() {
        var states = PartitionStates()
        states.assign([p0, p1])
        let batches = states.batches(of: [message(0, 5), message(1, 9), message(0, 6), message(2, 1)])
        #expect(batches.map(\.0) == [p0, p1])
        #expect(batches[0].1.map(\.offset) == [5, 6])
    }

    @Test("after a success, replayed offsets below the position are skipped")
    func skipsProcessed() {
        var states = PartitionStates()
        states.assign([p0])
        _ = states.batches(of: [message(0, 5), message(0, 6)])
        states.succeeded(p0, next: 7)
        #expect(states.batches(of: [message(0, 6), message(0, 7)]).first?.1.map(\.offset) == [7])
        // A partition whose messages were all processed gives no batch at all, not an empty one.
        #expect(states.batches(of: [message(0, 5), message(0, 6)]).isEmpty)
        #expect(
            states.partitionIndices(of: [message(0, 6), message(0, 7), message(0, 5), message(0, 8)]).map(\.1) == [
                [1, 3]
            ])
    }

    @Test("a failure rewinds, counts attempts and pauses until its time")
    func failureAndResume() {
        var states = PartitionStates()
        states.assign([p0])
        _ = states.batches(of: [message(0, 10), message(0, 11)])
        #expect(states.failed(p0, from: 10) == 0)
        #expect(states.failed(p0, from: 10) == 1)
        let now = ContinuousClock.now
        states.pause(p0, until: now + .seconds(5))
        #expect(states.batches(of: [message(0, 10)]).isEmpty)
        #expect(states.dueForResume(at: now).isEmpty)
        #expect(states.dueForResume(at: now + .seconds(6)) == [p0])
        #expect(states.positions(of: [p0]) == [p0: 10])
        states.succeeded(p0, next: 12)
        #expect(states.failed(p0, from: 12) == 0)
    }

    @Test("a revoked partition is forgotten; a message seen first sets the position")
    func revokeAndSeen() {
        var states = PartitionStates()
        states.assign([p0, p1])
        states.noteSeen(p1, offset: 40)
        #expect(states.positions(of: [p1]) == [p1: 40])
        states.revoke([p0])
        #expect(states.assigned == [p1])
        #expect(states.batches(of: [message(0, 1)]).isEmpty)
    }
}
