import Kafka
import PrewarmConfiguration

/// A decoded message with where it came from.
public struct Decoded<Value: Sendable>: Sendable {
    public let value: Value
    public let message: KafkaMessage
}

/// What a worker does with one topic: decode and validate each message, then handle a
/// batch of them. Handlers must be idempotent: a batch is retried after an outage and may
/// be replayed after a crash or an offset reset.
public protocol TopicHandler: Sendable {
    associatedtype Value: Sendable

    /// Decodes and validates; a throw sends the message to the DLQ with the error.
    func decode(_ message: KafkaMessage) throws -> Value

    /// Makes the batch's effects durable before returning. Throw a transient error (an
    /// outage) to have the batch retried after a pause; throw `InvalidMessage` or another
    /// permanent error to have the offending messages dead-lettered.
    func handle(_ batch: [Decoded<Value>]) async throws
}

/// One topic's route, its handler's types erased so that routes of every topic sit in one
/// list. Build them with `TopicRoute(topic:handler:)`.
public struct TopicRoute: Sendable {
    public let topic: String
    public let deadLetterTopic: String
    /// Decodes a poll's messages of this topic at once; the values stay in the handler's
    /// own type (no per-message boxing) until a subset is handed to it.
    let decode: @Sendable ([KafkaMessage]) -> DecodedMessages

    public init<Handler: TopicHandler>(topic: String, deadLetterTopic: String? = nil, handler: Handler) {
        self.topic = topic
        self.deadLetterTopic = deadLetterTopic ?? TopicSpec.deadLetterTopic(of: topic)
        self.decode = { messages in
            var values: [Handler.Value?] = []
            values.reserveCapacity(messages.count)
            var failures: [Int: any Error] = [:]
            for (index, message) in messages.enumerated() {
                do {
                    values.append(try handler.decode(message))
                } catch {
                    values.append(nil)
                    failures[index] = error
                }
            }
            let decoded = values
            return DecodedMessages(messages: messages, failures: failures) { indices in
                // Only indices of messages that decoded are handed over.
                try await handler.handle(indices.map { Decoded(value: decoded[$0]!, message: messages[$0]) })
            }
        }
    }

    /// The route of a catalogued topic, with its dead-letter topic.
    public init<Handler: TopicHandler>(_ spec: TopicSpec, handler: Handler) {
        self.init(topic: spec.name, deadLetterTopic: spec.deadLetterTopic, handler: handler)
    }
}

/// One topic's messages of a poll, decoded by its route.
struct DecodedMessages: Sendable {
    let messages: [KafkaMessage]
    /// Why each message that did not decode was refused, by index.
    let failures: [Int: any Error]
    /// Hands the messages at these indices (all decoded) to the handler.
    let handle: @Sendable ([Int]) async throws -> Void

    /// Messages of a topic no route handles: every one refused.
    static func unrouted(_ messages: [KafkaMessage]) -> DecodedMessages {
        let failures = Dictionary(
            uniqueKeysWithValues: messages.indices.map {
                ($0, InvalidMessage("no route for topic", errorClass: "NoRoute") as any Error)
            })
        return DecodedMessages(messages: messages, failures: failures) { _ in }
    }
}
