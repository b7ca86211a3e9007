import DevBroker
import Kafka
import TestSupport
import Testing

@Suite("Dev broker control protocol")
struct DevBrokerTests {
    @Test("bad commands are refused with a message naming the problem")
    func parsing() throws {
        #expect(throws: DevBrokerCommandError.self) { try DevBrokerCommand(parsing: "broker-down") }
        #expect(throws: DevBrokerCommandError.self) {
            try DevBrokerCommand(parsing: "request-errors Produce 3 NO_SUCH_ERROR")
        }
        #expect(throws: DevBrokerCommandError.self) { try DevBrokerCommand(parsing: "topic-create t 0") }
        #expect(throws: DevBrokerCommandError.self) { try DevBrokerCommand(parsing: "reboot") }
        #expect(try DevBrokerCommand(parsing: "latency 2 150") == .latency(broker: 2, milliseconds: 150))
        let code = KafkaError.code(named: "NOT_LEADER_FOR_PARTITION")
        #expect(code != nil)
        #expect(
            try DevBrokerCommand(parsing: "request-errors offset-commit 2 NOT_LEADER_FOR_PARTITION")
                == .failRequests(api: .offsetCommit, count: 2, error: code!))
    }

    @Test(
        "topics created through the running dev broker's control port have their partitions",
        .enabled(if: TestEnvironment.broker.injectsFaults, "the mock's control port"))
    func topicCreateOnRunningBroker() async throws {
        let control = try DevBrokerControlClient(controlFile: try TestEnvironment.devBrokerControlFile)
        #expect(try control.send("ping") == "pong")
        #expect(try control.send("bootstrap") == (try TestEnvironment.kafkaBootstrap))
        let name = TestEnvironment.uniqueName("ctl.topic")
        #expect(try control.send("topic-create \(name) 5") == "ok")
        let admin = try KafkaAdmin(bootstrapServers: try TestEnvironment.kafkaBootstrap)
        #expect(try await admin.partitionCounts([name]) == [name: 5])
        await admin.close()
        #expect(throws: DevBrokerCommandError.self) { try control.send("broker-down 99") }
    }

    /// Faults hit every client of a cluster, so this test runs a private one of its own.
    @Test("with every broker down a send fails after its timeout; with them back it succeeds")
    func brokersDownAndUp() async throws {
        let cluster = try KafkaMockCluster(brokers: 3)
        defer { cluster.shutdown() }
        let server = try DevBrokerControlServer(cluster: cluster)
        defer { server.stop() }
        let control = DevBrokerControlClient(port: server.port)
        try control.send("topic-create faults 1")
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(
                bootstrapServers: cluster.bootstrapServers,
                properties: KafkaProperties(["message.timeout.ms": "1500"])))
        try await producer.send(KafkaProducerMessage(topic: "faults", key: nil, value: "before"))
        for id in 1...3 { try control.send("broker-down \(id)") }
        let error = await #expect(throws: KafkaError.self) {
            try await producer.send(KafkaProducerMessage(topic: "faults", key: nil, value: "during"))
        }
        #expect(error?.name == "_MSG_TIMED_OUT")
        for id in 1...3 { try control.send("broker-up \(id)") }
        try await eventually("a send to succeed once the brokers are back") {
            (try? await producer.send(KafkaProducerMessage(topic: "faults", key: nil, value: "after"))) != nil
        }
        await producer.close()
    }
}
