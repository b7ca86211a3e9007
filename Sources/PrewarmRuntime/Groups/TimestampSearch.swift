import Foundation
import Kafka

/// Binary search for the first message at or after a time, reading single messages.
/// Timestamps in a partition are nearly but not strictly ordered (producers set them), so
/// on unordered data the result is a good place to start, as Kafka's own time index gives.
struct TimestampSearch {
    let consumer: KafkaConsumer
    let partition: KafkaTopicPartition

    mutating func firstOffset(atOrAfter milliseconds: Int64, low: Int64, high: Int64) async throws -> Int64 {
        guard try await timestamp(at: high - 1) >= milliseconds else { return high }
        var lower = low
        var upper = high - 1  // invariant: the message at `upper` is recent enough
        while lower < upper {
            let middle = lower + (upper - lower) / 2
            if try await timestamp(at: middle) >= milliseconds { upper = middle } else { lower = middle + 1 }
        }
        return lower
    }

    private func timestamp(at offset: Int64) async throws -> Int64 {
        try await consumer.assign([partition: offset])
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            for message in try await consumer.poll(maxMessages: 10, timeoutMilliseconds: 200).messages
            where message.topicPartition == partition && message.offset >= offset {
                return message.timestampMilliseconds ?? 0
            }
        }
        throw TimedOut("reading \(partition) at offset \(offset)", after: .seconds(10))
    }
}
