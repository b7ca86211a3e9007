import Foundation
import Kafka
import Postgres

/// Dead letters too large for their DLQ topic (the broker or the producer refuses them as
/// they are), kept whole in PostgreSQL (`prewarm_dead_letters`): key, value and headers as
/// bytes (header values as `x{hex}`, or empty for none), with the reason. The DLQ gets a small reference letter in their place
/// (`prewarm-dead-letter-ref: prewarm_dead_letters/{id}`, the original headers when they fit),
/// and `prewarmctl dlq replay` restores the message from the row.
public struct DeadLetterStore: Sendable {
    public let pool: PostgresPool

    public init(pool: PostgresPool) {
        self.pool = pool
    }

    /// The header naming the row of a letter kept here.
    public static let referenceHeader = "prewarm-dead-letter-ref"
    /// The original value's size in bytes, on a reference letter.
    public static let sizeHeader = "prewarm-original-size"
    static let referencePrefix = RuntimeSchema.deadLettersTable + "/"

    /// Keeps the letter (once per message and group: a message dead-lettered again keeps its
    /// row); returns the reference its DLQ letter carries.
    public func keep(_ letter: DeadLetter, group: String) async throws -> String {
        let message = letter.message
        let row = try await pool.withConnection { connection in
            try await connection.query(
                """
                INSERT INTO prewarm_dead_letters AS d (topic, partition, "offset", consumer_group, key, value,
                    header_names, header_values, timestamp_ms, error_class, error_message)
                VALUES ($1, $2, $3, $4, decode($5, 'hex'), decode($6, 'hex'), $7::text[], $8::text[], $9, $10, $11)
                ON CONFLICT (topic, partition, "offset", consumer_group)
                    DO UPDATE SET error_class = excluded.error_class, error_message = excluded.error_message
                RETURNING id
                """,
                [
                    message.topic, Int(message.partition), message.offset, group, message.key.map(Hex.encode),
                    Hex.encode(message.value), message.headers.map(\.name).postgresArray,
                    message.headers.map { $0.value.map { "x" + Hex.encode($0) } ?? "" }.postgresArray,
                    message.timestampMilliseconds, letter.errorClass, letter.errorMessage,
                ]
            ).first
        }
        guard let id = row?[0].int64 else {
            throw PostgresError(.server, operation: "keep dead letter", message: "no id returned")
        }
        return Self.referencePrefix + String(id)
    }

    /// The message a reference names, as it was consumed (its original topic); nil when the
    /// row is gone.
    public func message(_ reference: String) async throws -> KafkaProducerMessage? {
        guard reference.hasPrefix(Self.referencePrefix), let id = Int64(reference.dropFirst(Self.referencePrefix.count))
        else { throw UsageError("'\(reference)' is not a dead-letter reference") }
        let row = try await pool.withConnection { connection in
            try await connection.query(
                """
                SELECT topic, encode(key, 'hex'), encode(value, 'hex'), header_names, header_values, timestamp_ms
                FROM prewarm_dead_letters WHERE id = $1
                """, [id]
            ).first
        }
        guard let row else { return nil }
        let names = PostgresTextArray.parse(row[3].string ?? "{}")
        let values = PostgresTextArray.parse(row[4].string ?? "{}")
        // A header value is "x" and its hex; "" is a header without a value.
        let headers = zip(names, values).map { KafkaHeader($0, $1.isEmpty ? nil : Hex.decode(String($1.dropFirst()))) }
        return KafkaProducerMessage(
            topic: row[0].string ?? "", key: row[1].string.flatMap(Hex.decode),
            value: Hex.decode(row[2].string ?? "") ?? [], headers: headers)
    }
}
