import CRdKafka
import Logging
import Synchronization

/// What librdkafka's callbacks need, reached through the handle's opaque pointer.
/// Callbacks run on librdkafka's threads, so all mutable state is behind a `Mutex`.
final class KafkaHandleContext: Sendable {
    let logger: Logger
    let commitOnRevoke: Bool
    let rebalanceEvents = Mutex<[KafkaRebalanceEvent]>([])
    let lastError = Mutex<KafkaError?>(nil)

    init(logger: Logger, commitOnRevoke: Bool = false) {
        self.logger = logger
        self.commitOnRevoke = commitOnRevoke
    }
}

/// Owns one `rd_kafka_t` and the context its callbacks use.
///
/// `@unchecked Sendable`: librdkafka documents its handle as thread-safe for the calls
/// made through this type; calls that are not (consumer polling) are confined to one
/// thread by their owners.
final class KafkaHandle: @unchecked Sendable {
    let pointer: OpaquePointer
    let context: Unmanaged<KafkaHandleContext>
    private let destroyed = Atomic<Bool>(false)

    enum Kind {
        case producer
        case consumer
    }

    init(
        kind: Kind, properties: KafkaProperties, logger: Logger, commitOnRevoke: Bool = false,
        configure: (OpaquePointer) -> Void = { _ in }
    ) throws {
        let conf = rd_kafka_conf_new()!
        for (name, value) in properties.values.sorted(by: { $0.key < $1.key }) {
            do {
                try Self.set(conf, name, value)
            } catch {
                rd_kafka_conf_destroy(conf)
                throw error
            }
        }
        let context = Unmanaged.passRetained(KafkaHandleContext(logger: logger, commitOnRevoke: commitOnRevoke))
        rd_kafka_conf_set_opaque(conf, context.toOpaque())
        rd_kafka_conf_set_log_cb(conf, kafkaLogCallback)
        rd_kafka_conf_set_error_cb(conf, kafkaErrorCallback)
        configure(conf)
        var errstr = [CChar](repeating: 0, count: 512)
        // rd_kafka_new takes ownership of conf on success only.
        guard
            let handle = rd_kafka_new(
                kind == .producer ? RD_KAFKA_PRODUCER : RD_KAFKA_CONSUMER, conf, &errstr, errstr.count)
        else {
            rd_kafka_conf_destroy(conf)
            context.release()
            throw KafkaError(
                code: RD_KAFKA_RESP_ERR__INVALID_ARG.rawValue, operation: "create client",
                message: String(errorBuffer: errstr))
        }
        self.pointer = handle
        self.context = context
    }

    private static func set(_ conf: OpaquePointer, _ name: String, _ value: String) throws {
        var errstr = [CChar](repeating: 0, count: 512)
        guard rd_kafka_conf_set(conf, name, value, &errstr, errstr.count) == RD_KAFKA_CONF_OK else {
            let reason = String(errorBuffer: errstr)
            let shown = KafkaProperties.isSecret(name) ? "" : " (value '\(value)')"
            throw KafkaError(
                code: RD_KAFKA_RESP_ERR__INVALID_ARG.rawValue, operation: "configure",
                message: "property '\(name)'\(shown): \(reason)")
        }
    }

    /// Destroys the handle once; waits for librdkafka's threads to finish.
    func destroy() {
        guard !destroyed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        rd_kafka_destroy(pointer)
        context.release()
    }

    /// Throws once the owner has closed the client: the handle must not reach librdkafka
    /// after `destroy`. (Calls racing with `close` itself are the caller's bug.)
    func checkOpen(_ operation: String) throws {
        if destroyed.load(ordering: .acquiring) {
            throw KafkaError(RD_KAFKA_RESP_ERR__DESTROY, operation: operation, message: "the client has been closed")
        }
    }

    var name: String { String(cString: rd_kafka_name(pointer)) }
}

private func kafkaLogCallback(
    _ handle: OpaquePointer?, _ level: Int32, _ facility: UnsafePointer<CChar>?, _ message: UnsafePointer<CChar>?
) {
    guard let handle, let opaque = rd_kafka_opaque(handle) else { return }
    let context = Unmanaged<KafkaHandleContext>.fromOpaque(opaque).takeUnretainedValue()
    let text = message.map { String(cString: $0) } ?? ""
    let metadata: Logger.Metadata = ["facility": "\(facility.map { String(cString: $0) } ?? "")"]
    // syslog levels: 0-2 critical, 3 error, 4 warning, 5-6 info, 7 debug.
    switch level {
    case ...2: context.logger.critical("\(text)", metadata: metadata)
    case 3: context.logger.error("\(text)", metadata: metadata)
    case 4: context.logger.warning("\(text)", metadata: metadata)
    case 5, 6: context.logger.info("\(text)", metadata: metadata)
    default: context.logger.debug("\(text)", metadata: metadata)
    }
}

private func kafkaErrorCallback(
    _ handle: OpaquePointer?, _ code: Int32, _ reason: UnsafePointer<CChar>?, _ opaque: UnsafeMutableRawPointer?
) {
    guard let opaque else { return }
    let context = Unmanaged<KafkaHandleContext>.fromOpaque(opaque).takeUnretainedValue()
    let error = KafkaError(
        code: code, operation: "client", message: reason.map { String(cString: $0) } ?? "",
        isFatal: code == RD_KAFKA_RESP_ERR__FATAL.rawValue)
    context.lastError.withLock { $0 = error }
    if error.isFatal {
        context.logger.critical("kafka fatal error", metadata: ["error": "\(error)"])
    } else {
        // All brokers down and the like: librdkafka keeps retrying on its own.
        context.logger.warning(
            "kafka client error", metadata: ["error": "\(error.name)", "reason": "\(error.message)"])
    }
}

/// Conversions between Swift values and `rd_kafka_topic_partition_list_t`.
enum TopicPartitionList {
    /// A new list the caller must destroy; offsets are set where given.
    static func make(_ entries: [(KafkaTopicPartition, Int64?)]) -> UnsafeMutablePointer<
        rd_kafka_topic_partition_list_t
    > {
        let list = rd_kafka_topic_partition_list_new(Int32(max(entries.count, 1)))!
        for (topicPartition, offset) in entries {
            let element = rd_kafka_topic_partition_list_add(list, topicPartition.topic, topicPartition.partition)!
            if let offset { element.pointee.offset = offset }
        }
        return list
    }

    static func make(_ partitions: [KafkaTopicPartition]) -> UnsafeMutablePointer<rd_kafka_topic_partition_list_t> {
        make(partitions.map { ($0, nil) })
    }

    static func entries(
        _ list: UnsafePointer<rd_kafka_topic_partition_list_t>?
    ) -> [(partition: KafkaTopicPartition, offset: Int64, error: rd_kafka_resp_err_t)] {
        guard let list, let elements = list.pointee.elems else { return [] }
        return (0..<Int(list.pointee.cnt)).map { index in
            let element = elements[index]
            return (KafkaTopicPartition(String(cString: element.topic), element.partition), element.offset, element.err)
        }
    }

    static func partitions(_ list: UnsafePointer<rd_kafka_topic_partition_list_t>?) -> [KafkaTopicPartition] {
        entries(list).map(\.partition)
    }

    /// Throws the first per-partition error in `list`.
    static func check(_ list: UnsafePointer<rd_kafka_topic_partition_list_t>, _ operation: String) throws {
        if let failed = entries(list).first(where: { $0.error != RD_KAFKA_RESP_ERR_NO_ERROR }) {
            throw KafkaError(failed.error, operation: "\(operation) \(failed.partition)")
        }
    }
}
