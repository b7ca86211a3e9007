import DevBroker
import Kafka
import TestSupport
import Testing

@Suite("Kafka producer on the dev broker")
struct KafkaProducerTests {
    private func consumer(_ group: String) throws -> KafkaConsumer {
        try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(
                groupID: group, bootstrapServers: try TestEnvironment.kafkaBootstrap))
    }

    @Test("keys, headers and values arrive as sent, at the offsets the delivery reports gave")
    func headersAndReports() async throws {
        let topic = try await TestEnvironment.createTopic(partitions: 2)
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(bootstrapServers: try TestEnvironment.kafkaBootstrap))
        let sent = KafkaProducerMessage(
            topic: topic, key: Array("42".utf8), value: [0, 1, 2, 255],
            headers: [KafkaHeader("prewarm-error-class", "DecodingError"), KafkaHeader("empty", nil)])
        let report = try await producer.send(sent)
        await producer.close()

        let consumer = try consumer(TestEnvironment.uniqueName("group"))
        try await consumer.subscribe([topic])
        var received: KafkaMessage?
        try await eventually("the message to arrive") {
            received = try await consumer.poll(maxMessages: 10, timeoutMilliseconds: 200).messages.first
            return received != nil
        }
        await consumer.close()
        let message = try #require(received)
        #expect(message.key == sent.key)
        #expect(message.value == sent.value)
        #expect(message.headers == sent.headers)
        #expect(message.partition == report.partition && message.offset == report.offset)
        #expect(message.timestampMilliseconds != nil)
    }

    @Test("a closed producer refuses to send instead of touching freed memory")
    func sendAfterClose() async throws {
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(bootstrapServers: "127.0.0.1:1"))
        await producer.close()
        await producer.close()  // twice is harmless
        let error = await #expect(throws: KafkaError.self) {
            try await producer.send(KafkaProducerMessage(topic: "t", key: nil, value: "v"))
        }
        #expect(error?.name == "_DESTROY")
    }
}
