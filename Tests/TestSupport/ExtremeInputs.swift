import Foundation
import Kafka
import Logging
import PrewarmFixtures
import PrewarmRuntime
import Testing

/// The checks of `ExtremeInputs` in the tests.
extension ExtremeInputs {
    /// Produces the bad inputs (then `good` ones) to `topic`; expects each bad one
    /// dead-lettered exactly once, with a class. Returns where the good ones landed.
    @discardableResult
    public static func expectDeadLetteredOnce(
        _ bad: [Input], then good: [Input] = [], to topic: String, bootstrap: String? = nil
    ) async throws -> [KafkaDeliveryReport] {
        let reports = try await produce(bad + good, to: topic, bootstrap: bootstrap ?? TestEnvironment.kafkaBootstrap)
        let letters = try await deadLetters(of: Array(reports.prefix(bad.count)), topic: topic, bootstrap: bootstrap)
        for (input, report) in zip(bad, reports) {
            let classes = letters["\(report.partition)/\(report.offset)"] ?? []
            #expect(classes.count == 1, "\(input.name): dead-lettered \(classes.count) times")
            #expect(classes.allSatisfy { !$0.isEmpty }, "\(input.name): its class")
        }
        return Array(reports.dropFirst(bad.count))
    }

    /// Waits until `group` has committed every partition of `topic` to its end: none stopped.
    public static func expectCommittedToTheEnd(group: String, topic: String, bootstrap: String? = nil) async throws {
        let operations = GroupOperations(
            bootstrapServers: try bootstrap ?? TestEnvironment.kafkaBootstrap, properties: KafkaProperties(),
            logger: Logger(label: "test"))
        try await eventually(timeout: .seconds(30), "every partition of \(topic) committed to its end: none stopped") {
            try await operations.lag(group: group, topics: [topic]).allSatisfy { $0.lag == 0 }
        }
    }

    /// The dead letters of `reports` found on `topic`'s DLQ, read until every one is there (or
    /// `timeout`), keyed by the produced message's place; each with its error class.
    public static func deadLetters(
        of reports: [KafkaDeliveryReport], topic: String, bootstrap: String? = nil,
        timeout: Duration = .seconds(30) + TestEnvironment.broker.groupJoinTimeout
    ) async throws -> [String: [String]] {
        let wanted = Set(reports.map { "\($0.partition)/\($0.offset)" })
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(
                groupID: TestEnvironment.uniqueName("dlq-reader"),
                bootstrapServers: try bootstrap ?? TestEnvironment.kafkaBootstrap))
        try await consumer.subscribe([topic + ".dlq"])
        var found: [String: [String]] = [:]
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            for letter in try await consumer.poll(maxMessages: 500, timeoutMilliseconds: 200).messages {
                guard letter.header("prewarm-original-topic")?.stringValue == topic,
                    let partition = letter.header("prewarm-original-partition")?.stringValue,
                    let offset = letter.header("prewarm-original-offset")?.stringValue
                else { continue }
                let place = "\(partition)/\(offset)"
                if wanted.contains(place) {
                    found[place, default: []].append(letter.header("prewarm-error-class")?.stringValue ?? "")
                }
            }
            if Set(found.keys) == wanted {
                // A little longer, so that a letter sent twice would be seen.
                let until = ContinuousClock.now + .seconds(2)
                while ContinuousClock.now < until {
                    for letter in try await consumer.poll(maxMessages: 500, timeoutMilliseconds: 200).messages {
                        guard letter.header("prewarm-original-topic")?.stringValue == topic,
                            let partition = letter.header("prewarm-original-partition")?.stringValue,
                            let offset = letter.header("prewarm-original-offset")?.stringValue,
                            wanted.contains("\(partition)/\(offset)")
                        else { continue }
                        found["\(partition)/\(offset)", default: []].append(
                            letter.header("prewarm-error-class")?.stringValue ?? "")
                    }
                }
                break
            }
        }
        await consumer.close()
        return found
    }
}
