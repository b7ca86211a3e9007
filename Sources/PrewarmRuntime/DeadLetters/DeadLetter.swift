import Foundation
import Kafka

/// A message that could not be processed and the reason, as written to `<topic>.dlq`:
/// the original key, value and headers unchanged, plus headers naming the error and the
/// message's origin, so an operator can see why and `prewarmctl dlq replay` can send it back.
public struct DeadLetter: Sendable {
    public let message: KafkaMessage
    public let errorClass: String
    public let errorMessage: String

    public enum Header {
        public static let errorClass = "prewarm-error-class"
        public static let errorMessage = "prewarm-error-message"
        public static let originalTopic = "prewarm-original-topic"
        public static let originalPartition = "prewarm-original-partition"
        public static let originalOffset = "prewarm-original-offset"
        public static let originalTimestamp = "prewarm-original-timestamp"
        public static let consumerGroup = "prewarm-consumer-group"
        static let all = [
            errorClass, errorMessage, originalTopic, originalPartition, originalOffset, originalTimestamp,
            consumerGroup, DeadLetterStore.referenceHeader, DeadLetterStore.sizeHeader,
        ]
    }

    public init(message: KafkaMessage, error: Error) {
        self.message = message
        self.errorClass = Failure.errorClass(of: error)
        // Bounded: a header is no place for a megabyte of error text.
        self.errorMessage = String(String(describing: error).prefix(1000))
    }

    public func producerMessage(topic: String, group: String) -> KafkaProducerMessage {
        // Earlier prewarm headers (a message dead-lettered before) are replaced, not stacked.
        var headers = message.headers.filter { !Header.all.contains($0.name) }
        headers += [
            KafkaHeader(Header.errorClass, errorClass),
            KafkaHeader(Header.errorMessage, errorMessage),
            KafkaHeader(Header.originalTopic, message.topic),
            KafkaHeader(Header.originalPartition, String(message.partition)),
            KafkaHeader(Header.originalOffset, String(message.offset)),
            KafkaHeader(Header.consumerGroup, group),
        ]
        if let timestamp = message.timestampMilliseconds {
            headers.append(KafkaHeader(Header.originalTimestamp, String(timestamp)))
        }
        return KafkaProducerMessage(topic: topic, key: message.key, value: message.value, headers: headers)
    }

    /// The letter that stands for this one when it is kept whole elsewhere (`DeadLetterStore`):
    /// no value, the key and the original headers only while they are small, the reference
    /// and the original size.
    public func referenceMessage(topic: String, group: String, reference: String) -> KafkaProducerMessage {
        var full = producerMessage(topic: topic, group: group)
        let originalBytes = message.headers.reduce(0) { $0 + $1.name.utf8.count + ($1.value?.count ?? 0) }
        if originalBytes > Self.smallBytes {
            full.headers.removeAll { !Header.all.contains($0.name) }
        }
        if (full.key?.count ?? 0) > Self.smallBytes { full.key = nil }
        full.value = []
        full.headers += [
            KafkaHeader(DeadLetterStore.referenceHeader, reference),
            KafkaHeader(DeadLetterStore.sizeHeader, String(message.value.count)),
        ]
        return full
    }

    /// The most of a key or of the original headers a reference letter carries.
    static let smallBytes = 16_384
}
