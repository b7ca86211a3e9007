import Foundation
import Kafka
import Logging
import PrewarmConfiguration
import PrewarmRuntime
import Redis
import ServiceLifecycle
import TestSupport
import Testing

/// `prewarmctl dlq replay`: dead letters back on their topic once.
extension GroupOperationsTests {
    @Test("dead letters go back to their original topic once, without the error headers")
    func replayDeadLetters() async throws {
        let topic = try await TestEnvironment.createTopic(partitions: 1)
        let dlq = try await TestEnvironment.createTopic(named: topic + ".dlq", partitions: 1)
        let letters = (0..<3).map { index in
            DeadLetter(
                message: KafkaMessage(
                    topic: topic, partition: 0, offset: Int64(index), key: Array("k\(index)".utf8),
                    value: Array("{\"id\": \(index)}".utf8), headers: [KafkaHeader("trace", "t\(index)")]),
                error: InvalidMessage("store missing", errorClass: "UnknownStore")
            ).producerMessage(topic: dlq, group: "entry-ingest")
        }
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(bootstrapServers: try TestEnvironment.kafkaBootstrap))
        try await producer.send(letters)
        await producer.close()

        let replayGroup = TestEnvironment.uniqueName("replay")
        let first = try await operations().replayDeadLetters(from: dlq, replayGroup: replayGroup)
        #expect(first.replayed == [topic: 3])
        let back = try await read(topic, count: 3)
        #expect(Set(back.map(\.valueString)) == ["{\"id\": 0}", "{\"id\": 1}", "{\"id\": 2}"])
        for message in back {
            #expect(message.header(DeadLetter.Header.errorClass) == nil)
            #expect(message.header("trace") != nil)
            #expect(message.header("prewarm-replayed-from")?.stringValue?.hasPrefix(dlq) == true)
        }
        let second = try await operations().replayDeadLetters(from: dlq, replayGroup: replayGroup)
        #expect(second.total == 0, "a second replay sends nothing again")
    }
}
