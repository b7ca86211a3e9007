import CRdKafka

/// Every failure of the Kafka wrapper: the librdkafka error code and name, the operation
/// that failed and librdkafka's text. Configuration values are never echoed (they may be
/// SASL passwords).
public struct KafkaError: Error, Sendable, CustomStringConvertible {
    /// librdkafka's `rd_kafka_resp_err_t` value (negative codes are client-side).
    public var code: Int32
    public var operation: String
    public var message: String
    /// librdkafka says the client cannot go on (e.g. a fenced idempotent producer).
    public var isFatal: Bool

    public init(code: Int32, operation: String, message: String, isFatal: Bool = false) {
        self.code = code
        self.operation = operation
        self.message = message
        self.isFatal = isFatal
    }

    init(_ error: rd_kafka_resp_err_t, operation: String, message: String? = nil) {
        self.init(
            code: error.rawValue, operation: operation,
            message: message ?? String(cString: rd_kafka_err2str(error)))
    }

    /// Wraps an `rd_kafka_error_t` and destroys it.
    init(consuming error: OpaquePointer, operation: String) {
        defer { rd_kafka_error_destroy(error) }
        self.init(
            code: rd_kafka_error_code(error).rawValue, operation: operation,
            message: String(cString: rd_kafka_error_string(error)),
            isFatal: rd_kafka_error_is_fatal(error) != 0)
    }

    /// librdkafka's symbolic name, e.g. `REBALANCE_IN_PROGRESS` or `_TIMED_OUT`.
    public var name: String { String(cString: rd_kafka_err2name(rd_kafka_resp_err_t(code))) }

    public var isRebalanceInProgress: Bool { code == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS.rawValue }
    /// The group is rebalancing or has moved on without this member: its assignment is about
    /// to be revoked, and commits are refused until it rejoins.
    public var isGroupRebalancing: Bool {
        isRebalanceInProgress || code == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION.rawValue
            || code == RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID.rawValue
    }
    public var description: String { "Kafka \(operation) failed (\(name)): \(message)" }

    /// A produce failed because of the message itself (too large for the producer's
    /// `message.max.bytes` or the topic's `max.message.bytes`, or refused as invalid): sending
    /// it again fails the same way, so it is no outage.
    public var isRefusedMessage: Bool {
        [
            RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, RD_KAFKA_RESP_ERR_INVALID_MSG, RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE,
            RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE, RD_KAFKA_RESP_ERR_INVALID_RECORD,
        ].contains { $0.rawValue == code }
    }

    /// Throws for any code but NO_ERROR.
    static func check(_ error: rd_kafka_resp_err_t, _ operation: String) throws {
        if error != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(error, operation: operation) }
    }

    /// The code for a symbolic name such as `NOT_LEADER_FOR_PARTITION` (with or without the
    /// `RD_KAFKA_RESP_ERR_` prefix), for fault injection.
    public static func code(named name: String) -> Int32? {
        let wanted = name.hasPrefix("RD_KAFKA_RESP_ERR_") ? String(name.dropFirst(18)) : name
        var descriptions: UnsafePointer<rd_kafka_err_desc>?
        var count = 0
        rd_kafka_get_err_descs(&descriptions, &count)
        guard let descriptions else { return nil }
        for index in 0..<count {
            let entry = descriptions[index]
            if let entryName = entry.name, String(cString: entryName) == wanted { return entry.code.rawValue }
        }
        return nil
    }
}

public enum KafkaVersion {
    /// The librdkafka this process runs with, e.g. `2.0.2`.
    public static var librdkafka: String { String(cString: rd_kafka_version_str()) }
}

extension String {
    /// Text of a NUL-terminated `char errstr[N]` buffer that librdkafka filled.
    init(errorBuffer buffer: [CChar]) {
        self.init(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
