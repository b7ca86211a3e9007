import CRdKafka
import Foundation
import Logging
import Synchronization

/// A producer whose sends complete when the broker has acknowledged the message (or
/// delivery has finally failed). A thread of its own serves librdkafka's delivery reports.
public final class KafkaProducer: Sendable {
    public let configuration: KafkaProducerConfiguration
    private let handle: KafkaHandle
    private let pollLoop: PollLoop

    public init(configuration: KafkaProducerConfiguration, logger: Logger = Logger(label: "prewarm.kafka.producer"))
        throws
    {
        self.configuration = configuration
        self.handle = try KafkaHandle(kind: .producer, properties: configuration.properties, logger: logger) { conf in
            rd_kafka_conf_set_dr_msg_cb(conf, kafkaDeliveryCallback)
        }
        self.pollLoop = PollLoop(name: "kafka-producer-poll") { [handle] in rd_kafka_poll(handle.pointer, 100) }
    }

    /// Sends one message; returns where it was stored.
    @discardableResult
    public func send(_ message: KafkaProducerMessage) async throws -> KafkaDeliveryReport {
        try await send([message])[0]
    }

    /// Sends every message and waits for all their delivery reports. Throws the first
    /// failure once every message has a report, so nothing is left in flight; callers retry
    /// the whole batch, which is safe because prewarm's consumers are idempotent.
    @discardableResult
    public func send(_ messages: [KafkaProducerMessage]) async throws -> [KafkaDeliveryReport] {
        if messages.isEmpty { return [] }
        let batch = DeliveryBatch(count: messages.count)
        return try await withCheckedThrowingContinuation { continuation in
            batch.continuation.withLock { $0 = continuation }
            Task { await self.enqueue(messages, batch) }
        }
    }

    private func enqueue(_ messages: [KafkaProducerMessage], _ batch: DeliveryBatch) async {
        for (index, message) in messages.enumerated() {
            while true {
                let ticket = Unmanaged.passRetained(DeliveryTicket(batch: batch, index: index))
                let error = produce(message, opaque: ticket.toOpaque())
                if error == RD_KAFKA_RESP_ERR_NO_ERROR { break }
                ticket.release()
                if error == RD_KAFKA_RESP_ERR__QUEUE_FULL {
                    // The local queue is full: wait for deliveries to drain it, never block a thread.
                    try? await Task.sleep(for: .milliseconds(2))
                    continue
                }
                batch.complete(index, .failure(KafkaError(error, operation: "produce to \(message.topic)")))
                break
            }
        }
    }

    private func produce(_ message: KafkaProducerMessage, opaque: UnsafeMutableRawPointer) -> rd_kafka_resp_err_t {
        var headers: OpaquePointer?
        if !message.headers.isEmpty {
            headers = rd_kafka_headers_new(message.headers.count)
            for header in message.headers {
                if let value = header.value {
                    _ = value.withUnsafeBytes {
                        rd_kafka_header_add(headers, header.name, -1, $0.baseAddress, $0.count)
                    }
                } else {
                    _ = rd_kafka_header_add(headers, header.name, -1, nil, 0)
                }
            }
        }
        let error = message.value.withUnsafeBytes { value in
            withOptionalBytes(message.key) { key in
                prewarm_rd_kafka_produce(
                    handle.pointer, message.topic, message.partition ?? RD_KAFKA_PARTITION_UA,
                    key?.baseAddress, key?.count ?? 0, value.baseAddress, value.count,
                    headers, message.timestampMilliseconds ?? 0, opaque)
            }
        }
        if error != RD_KAFKA_RESP_ERR_NO_ERROR, let headers { rd_kafka_headers_destroy(headers) }
        return error
    }

    /// Waits until every message in flight has a delivery report.
    public func flush(timeoutMilliseconds: Int) async throws {
        let error = try await KafkaBlocking.run { [handle] in rd_kafka_flush(handle.pointer, Int32(timeoutMilliseconds))
        }
        try KafkaError.check(error, "flush")
    }

    /// Flushes (up to the configured timeout), then stops the poll thread and frees the
    /// client. Messages still undelivered after the timeout fail their sends.
    public func close() async {
        do {
            try await flush(timeoutMilliseconds: configuration.flushTimeoutMilliseconds)
        } catch {
            handle.context.takeUnretainedValue().logger.error(
                "kafka producer closed with messages in flight", metadata: ["error": "\(error)"])
        }
        await KafkaBlocking.run { [handle, pollLoop] in
            rd_kafka_purge(handle.pointer, Int32(RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT))
            rd_kafka_flush(handle.pointer, 1000)  // serves the purged messages' reports
            pollLoop.stop()
            handle.destroy()
        }
    }
}

/// A thread that calls `body` until stopped.
final class PollLoop: Sendable {
    private let running = Atomic<Bool>(true)
    private let stopped = DispatchSemaphore(value: 0)

    init(name: String, _ body: @escaping @Sendable () -> Void) {
        let thread = Thread { [self] in
            while running.load(ordering: .acquiring) { body() }
            stopped.signal()
        }
        thread.name = name
        thread.start()
    }

    /// Ends the loop and waits for its current call to return.
    func stop() {
        running.store(false, ordering: .releasing)
        stopped.wait()
    }
}

/// Collects the delivery reports of one `send` and resumes its caller after the last.
final class DeliveryBatch: Sendable {
    let continuation = Mutex<CheckedContinuation<[KafkaDeliveryReport], Error>?>(nil)
    private let state: Mutex<(results: [Result<KafkaDeliveryReport, KafkaError>?], remaining: Int)>

    init(count: Int) {
        state = Mutex((Array(repeating: nil, count: count), count))
    }

    func complete(_ index: Int, _ result: Result<KafkaDeliveryReport, KafkaError>) {
        let finished: [Result<KafkaDeliveryReport, KafkaError>?]? = state.withLock { state in
            state.results[index] = result
            state.remaining -= 1
            return state.remaining == 0 ? state.results : nil
        }
        guard let finished else { return }
        let outcome = Result<[KafkaDeliveryReport], Error> { try finished.map { try $0!.get() } }
        // The continuation is stored before the first message is produced.
        continuation.withLock { $0?.resume(with: outcome) }
    }
}

final class DeliveryTicket {
    let batch: DeliveryBatch
    let index: Int

    init(batch: DeliveryBatch, index: Int) {
        self.batch = batch
        self.index = index
    }
}

private func kafkaDeliveryCallback(
    _ handle: OpaquePointer?, _ message: UnsafePointer<rd_kafka_message_t>?, _ opaque: UnsafeMutableRawPointer?
) {
    guard let message, let privatePointer = message.pointee._private else { return }
    let ticket = Unmanaged<DeliveryTicket>.fromOpaque(privatePointer).takeRetainedValue()
    let topic = message.pointee.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? ""
    if message.pointee.err == RD_KAFKA_RESP_ERR_NO_ERROR {
        ticket.batch.complete(
            ticket.index,
            .success(
                KafkaDeliveryReport(topic: topic, partition: message.pointee.partition, offset: message.pointee.offset))
        )
    } else {
        let error = KafkaError(message.pointee.err, operation: "deliver to \(topic)")
        ticket.batch.complete(ticket.index, .failure(error))
    }
}

func withOptionalBytes<R>(_ bytes: [UInt8]?, _ body: (UnsafeRawBufferPointer?) -> R) -> R {
    guard let bytes else { return body(nil) }
    return bytes.withUnsafeBytes { body($0) }
}

/// Blocking librdkafka calls that are not tied to one client's thread (flush, destroy,
/// admin requests) run here, on threads of their own rather than Swift's shared pool.
enum KafkaBlocking {
    static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread { continuation.resume(with: Result { try body() }) }
            thread.name = "kafka-blocking"
            thread.start()
        }
    }

    static func run(_ body: @escaping @Sendable () -> Void) async {
        _ = try? await run { () throws -> Void in body() }
    }
}
