import Kafka
import Logging
import TestSupport
import Testing

@testable import PrewarmRuntime

@Suite("Reading marked dead letters back", .closesResources)
struct DeadLetterAuditTests {
    @Test("a DLQ that cannot be read counts every marked letter as lost, so each is sent again, twice in a row")
    func unreachable() async throws {
        let audit = DeadLetterAudit(
            group: "g", consumer: KafkaConsumerConfiguration(groupID: "g", bootstrapServers: "127.0.0.1:1"),
            timeout: .seconds(2), logger: Logger(label: "test"))
        let letters = [Int64(0), .max].map { offset in
            DeadLetterAudit.Sent(
                message: KafkaMessage(topic: "t", partition: 0, offset: offset, key: nil, value: Array("bad".utf8)),
                partition: KafkaTopicPartition("t.dlq", 0), offset: offset)
        }
        #expect(await audit.missing(letters) == [0, 1], "a second letter beats a lost one")
        #expect(await audit.missing(letters) == [0, 1], "the kept reader fails the same way, and says so")
        await audit.close()
    }
}
