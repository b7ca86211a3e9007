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
    let decode: @Sendable (KafkaMessage) -> Result<any Sendable, any Error>
    let handle: @Sendable ([(any Sendable, KafkaMessage)]) async throws -> Void

    public init<Handler: TopicHandler>(topic: String, deadLetterTopic: String? = nil, handler: Handler) {
        self.topic = topic
        self.deadLetterTopic = deadLetterTopic ?? topic + ".dlq"
        self.decode = { message in Result { try handler.decode(message) as any Sendable } }
        self.handle = { batch in
            // Values only ever come from this route's own `decode`, so the cast holds.
            try await handler.handle(batch.map { Decoded(value: $0.0 as! Handler.Value, message: $0.1) })
        }
    }

    /// The route of a catalogued topic, with its dead-letter topic.
    public init<Handler: TopicHandler>(_ spec: TopicSpec, handler: Handler) {
        self.init(topic: spec.name, deadLetterTopic: spec.deadLetterTopic, handler: handler)
    }
}
