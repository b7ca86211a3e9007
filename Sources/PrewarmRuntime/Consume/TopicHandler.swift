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
