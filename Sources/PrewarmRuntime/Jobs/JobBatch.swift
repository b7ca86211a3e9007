import Foundation
import Kafka

/// The standard message of a batch topic (`store-rec.batches.v1`, `book-rec.batches.v1`):
/// one slice of a job run's targets, produced by the pod that won the run and worked by any
/// pod of the consumer group. Documented in topics.md.
public struct JobBatch: Sendable, Codable, Equatable {
    public var job: String
    public var period: String
    /// The run's attempt (a forced re-run of a period is a new attempt).
    public var attempt: Int
    /// Index within the run, from 0.
    public var batch: Int
    /// How many batches the run expects (counted when it started; the run's record has the
    /// final count once its fan-out ends).
    public var batchCount: Int?
    public var ids: [Int64]
    public var producedAt: Date

    public init(
        job: String, period: String, attempt: Int, batch: Int, batchCount: Int?, ids: [Int64], producedAt: Date = Date()
    ) {
        self.job = job
        self.period = period
        self.attempt = attempt
        self.batch = batch
        self.batchCount = batchCount
        self.ids = ids
        self.producedAt = producedAt
    }

    enum CodingKeys: String, CodingKey {
        case job, period, attempt, batch, ids
        case batchCount = "batch_count"
        case producedAt = "produced_at"
    }

    /// `{job}:{period}:{batch}`: unique per batch, and readable in a DLQ.
    public var key: String { "\(job):\(period):\(batch)" }

    /// The message: the same JSON as `JSONEncoder.prewarm` gives, written directly.
    public func message(topic: String) throws -> KafkaProducerMessage {
        KafkaProducerMessage(topic: topic, key: Array(key.utf8), value: JobBatchJSON.encode(self))
    }

    /// Decodes and checks a batch message; a bad one is refused with the reason.
    public static func decode(_ message: KafkaMessage) throws -> JobBatch {
        let batch: JobBatch
        do {
            batch = try JobBatchJSON.decode(message.value)
        } catch {
            throw InvalidMessage("not a job batch: \(error)", errorClass: "UndecodableBatch")
        }
        guard !batch.job.isEmpty, !batch.period.isEmpty, batch.attempt >= 1, batch.batch >= 0 else {
            throw InvalidMessage("job, period, attempt or batch is missing or negative", errorClass: "InvalidBatch")
        }
        return batch
    }
}
