import Kafka
import PrewarmConfiguration

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
