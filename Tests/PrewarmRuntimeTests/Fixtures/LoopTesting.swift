import CoreMetrics
import Foundation
import Kafka
import Logging
import PrewarmRuntime
import Redis
import ServiceLifecycle
import TestSupport

/// Shared by the suites that run a consume loop against the dev broker and Redis.
struct Item: Decodable, Sendable {
    let id: Int
}

/// Writes `prefix:id -> offset` for each message, as a worker's cache write would.
struct RedisWriter: TopicHandler {
    let redis: RedisConnection
    let prefix: String
    var gate: Gate?

    func decode(_ message: KafkaMessage) throws -> Item {
        let item = try JSONDecoder().decode(Item.self, from: Data(message.value))
        guard item.id >= 0 else { throw InvalidMessage("id \(item.id) is negative", errorClass: "NegativeID") }
        return item
    }

    func handle(_ batch: [Decoded<Item>]) async throws {
        await gate?.arrive()
        let replies = try await redis.pipeline(
            batch.map { RedisCommand("SET", "\(prefix):\($0.value.id)", $0.message.offset, "EX", 600) })
        if let failed = replies.first(where: { if case .error = $0 { true } else { false } }) {
            throw RedisError(.server, operation: "SET", message: failed.string ?? "")
        }
    }
}

protocol LoopTesting {}

extension LoopTesting {
    static var fastGroup: KafkaProperties {
        KafkaProperties(["session.timeout.ms": "6000", "heartbeat.interval.ms": "500"])
    }

    func loop(
        topic: String, group: String, handler: RedisWriter, properties: KafkaProperties = Self.fastGroup,
        metricsFactory: any MetricsFactory = NOOPMetricsHandler.instance, alerts: Alerts? = nil,
        configure: (inout ConsumeLoopConfiguration) -> Void = { _ in }
    ) throws -> ConsumeLoop {
        try loop(
            topic: topic, group: group, handling: handler, properties: properties, metricsFactory: metricsFactory,
            alerts: alerts, configure: configure)
    }

    /// A consume loop of one topic and handler on the dev broker (batches of 50, retries
    /// after 200 ms to 1 s, unless `configure` says otherwise).
    func loop(
        topic: String, group: String, handling handler: some TopicHandler, properties: KafkaProperties = Self.fastGroup,
        metricsFactory: any MetricsFactory = NOOPMetricsHandler.instance, alerts: Alerts? = nil,
        deadLetterStore: DeadLetterStore? = nil, deadLetterMarks: DeadLetterMarks? = nil,
        label: String = "test.consume-loop", bootstrap: String? = nil,
        configure: (inout ConsumeLoopConfiguration) -> Void = { _ in }
    ) throws -> ConsumeLoop {
        let bootstrap = try bootstrap ?? TestEnvironment.kafkaBootstrap
        var configuration = ConsumeLoopConfiguration(
            groupID: group, maxBatchMessages: 50, maxBatchWait: .milliseconds(100),
            retryBackoff: Backoff(initial: .milliseconds(200), maximum: .seconds(1)))
        configure(&configuration)
        let deadLetters = try KafkaProducer(configuration: KafkaProducerConfiguration(bootstrapServers: bootstrap))
        closeAfterTest { await deadLetters.close() }
        return ConsumeLoop(
            configuration: configuration,
            consumer: try KafkaConsumer(
                configuration: KafkaConsumerConfiguration(
                    groupID: group, bootstrapServers: bootstrap, properties: properties)),
            deadLetterProducer: deadLetters, deadLetterStore: deadLetterStore, deadLetterMarks: deadLetterMarks,
            routes: [TopicRoute(topic: topic, handler: handler)],
            logger: Logger(label: label), metricsFactory: metricsFactory, alerts: alerts)
    }

    func produce(_ topic: String, _ values: [String]) async throws {
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(bootstrapServers: try TestEnvironment.kafkaBootstrap))
        try await producer.send(
            values.enumerated().map { KafkaProducerMessage(topic: topic, key: "k\($0.offset)", value: $0.element) })
        await producer.close()
    }

    func read(_ topic: String, count: Int) async throws -> [KafkaMessage] {
        try await TestEnvironment.read(topic, count: count)
    }

    func stored(_ redis: RedisConnection, _ prefix: String, ids: Range<Int>) async throws -> Int {
        try await redis.mget(ids.map { "\(prefix):\($0)" }).compactMap { $0 }.count
    }

    func running(_ loop: ConsumeLoop) -> (ServiceGroup, Task<Void, any Error>) {
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(services: [loop], logger: Logger(label: "test.service-group")))
        return (group, Task { try await group.run() })
    }

}

/// Holds handlers at a barrier until the test opens it.
actor Gate {
    private var isOpen = true
    private var waiters: [CheckedContinuation<Void, Never>] = []
    private(set) var waiting = 0

    func close() { isOpen = false }

    func open() {
        isOpen = true
        waiters.forEach { $0.resume() }
        waiters.removeAll()
    }

    func arrive() async {
        guard !isOpen else { return }
        waiting += 1
        await withCheckedContinuation { waiters.append($0) }
    }
}
