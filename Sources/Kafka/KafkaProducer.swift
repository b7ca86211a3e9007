import BlockingIO
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
        self.pollLoop = PollLoop(name: "kafka-producer-poll") { [handle] in
            rd_kafka_poll(handle.pointer, 100)
        } wake: { [handle] in
            // Wakes a poll that is waiting on an empty main queue.
            let queue = rd_kafka_queue_get_main(handle.pointer)
            rd_kafka_queue_yield(queue)
            rd_kafka_queue_destroy(queue)
        }
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
        try await sendEach(messages).map { try $0.get() }
    }

    /// Sends every message and returns each one's delivery report or failure, in order, once
    /// every message has one: one message the broker refuses (too large, say) fails alone.
    /// Throws only when the producer is closed.
    public func sendEach(_ messages: [KafkaProducerMessage]) async throws -> [Result<KafkaDeliveryReport, KafkaError>] {
        if messages.isEmpty { return [] }
        try handle.checkOpen("send")
        let batch = DeliveryBatch(count: messages.count)
        return await withCheckedContinuation { continuation in
            batch.continuation.withLock { $0 = continuation }
            Task { await self.enqueue(messages, batch) }
        }
    }

    private func enqueue(_ messages: [KafkaProducerMessage], _ batch: DeliveryBatch) async {
        for index in messages.indices {
            while true {
                let error = produce(messages[index], opaque: batch.slot(index))
                if error == RD_KAFKA_RESP_ERR_NO_ERROR { break }
                if error == RD_KAFKA_RESP_ERR__QUEUE_FULL {
                    // The local queue is full: wait for deliveries to drain it, never block a thread.
                    try? await Task.sleep(for: .milliseconds(2))
                    continue
                }
                batch.complete(index, .failure(KafkaError(error, operation: "produce to \(messages[index].topic)")))
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

    /// Fetches the metadata of `topics` now, so the first send to each does not wait for it;
    /// returns each topic's partition count. Throws if a topic does not exist (or the
    /// cluster cannot be reached in time).
    @discardableResult
    public func prepare(topics: [String], timeoutMilliseconds: Int = 10_000) async throws -> [String: Int] {
        try handle.checkOpen("prepare")
        return try await KafkaBlocking.run { [handle] in
            var partitions: [String: Int] = [:]
            for topic in topics {
                guard let topicHandle = rd_kafka_topic_new(handle.pointer, topic, nil) else {
                    throw KafkaError(rd_kafka_last_error(), operation: "prepare topic \(topic)")
                }
                defer { rd_kafka_topic_destroy(topicHandle) }
                var metadata: UnsafePointer<rd_kafka_metadata>?
                try KafkaError.check(
                    rd_kafka_metadata(handle.pointer, 0, topicHandle, &metadata, Int32(timeoutMilliseconds)),
                    "metadata of \(topic)")
                defer { if let metadata { rd_kafka_metadata_destroy(metadata) } }
                if let metadata, metadata.pointee.topic_cnt > 0,
                    metadata.pointee.topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR
                {
                    throw KafkaError(metadata.pointee.topics[0].err, operation: "prepare topic \(topic)")
                }
                if let metadata, metadata.pointee.topic_cnt > 0 {
                    partitions[topic] = Int(metadata.pointee.topics[0].partition_cnt)
                }
            }
            return partitions
        }
    }

    /// Waits until every message in flight has a delivery report.
    public func flush(timeoutMilliseconds: Int) async throws {
        try handle.checkOpen("flush")
        let error = try await KafkaBlocking.run { [handle] in rd_kafka_flush(handle.pointer, Int32(timeoutMilliseconds))
        }
        try KafkaError.check(error, "flush")
    }

    /// Flushes (up to the configured timeout), then stops the poll thread and frees the
    /// client. Messages still undelivered after the timeout fail their sends.
    public func close() async {
        guard (try? handle.checkOpen("close")) != nil else { return }
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
    private let wake: @Sendable () -> Void

    /// `wake` interrupts a `body` that is waiting, so `stop` need not wait out its timeout.
    init(name: String, _ body: @escaping @Sendable () -> Void, wake: @escaping @Sendable () -> Void) {
        self.wake = wake
        let thread = Thread { [self] in
            ThreadName.set(name)
            while running.load(ordering: .acquiring) { body() }
            stopped.signal()
        }
        thread.name = name
        thread.start()
    }

    /// Ends the loop and waits for its current call to return.
    func stop() {
        running.store(false, ordering: .releasing)
        wake()
        stopped.wait()
    }
}

/// Collects the delivery reports of one `send` and resumes its caller after the last.
///
/// Each message's opaque pointer is its slot in one array allocated per batch (not an
/// object per message); a slot holds the batch, unretained, and the message's index. The
/// batch keeps itself alive until its last report, then frees the slots.
final class DeliveryBatch: @unchecked Sendable {
    // Safe: `slots` is written once in `init` and freed once, after the last report;
    // everything that changes is behind the mutexes.
    let continuation = Mutex<CheckedContinuation<[Result<KafkaDeliveryReport, KafkaError>], Never>?>(nil)
    private let state: Mutex<State>
    private let slots: UnsafeMutablePointer<DeliverySlot>
    private var keepAlive: Unmanaged<DeliveryBatch>?

    private struct State {
        var results: [Result<KafkaDeliveryReport, KafkaError>?]
        var remaining: Int
        /// Reports of one batch nearly always name one topic: make its String once.
        var lastTopic: (address: Int, name: String)?
    }

    init(count: Int) {
        state = Mutex(State(results: Array(repeating: nil, count: count), remaining: count))
        slots = .allocate(capacity: count)
        let retained = Unmanaged.passRetained(self)
        keepAlive = retained
        for index in 0..<count { (slots + index).initialize(to: DeliverySlot(batch: retained, index: index)) }
    }

    func slot(_ index: Int) -> UnsafeMutableRawPointer { UnsafeMutableRawPointer(slots + index) }

    /// From the delivery callback: the report of the message at `slot`.
    static func deliver(_ slot: UnsafeMutableRawPointer, _ message: UnsafePointer<rd_kafka_message_t>) {
        let entry = slot.assumingMemoryBound(to: DeliverySlot.self).pointee
        let batch = entry.batch.takeUnretainedValue()
        guard message.pointee.err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            let topic = message.pointee.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? ""
            batch.complete(entry.index, .failure(KafkaError(message.pointee.err, operation: "deliver to \(topic)")))
            return
        }
        batch.complete(entry.index, topicPointer: message.pointee.rkt.map { rd_kafka_topic_name($0) }) { topic in
            .success(
                KafkaDeliveryReport(topic: topic, partition: message.pointee.partition, offset: message.pointee.offset))
        }
    }

    func complete(_ index: Int, _ result: Result<KafkaDeliveryReport, KafkaError>) {
        complete(index, topicPointer: nil) { _ in result }
    }

    private func complete(
        _ index: Int, topicPointer: UnsafePointer<CChar>?,
        _ result: (String) -> Result<KafkaDeliveryReport, KafkaError>
    ) {
        var topic = ""
        if let topicPointer {
            let address = Int(bitPattern: topicPointer)
            topic = state.withLock { state in
                if let last = state.lastTopic, last.address == address { return last.name }
                let name = String(cString: topicPointer)
                state.lastTopic = (address, name)
                return name
            }
        }
        let report = result(topic)
        let finished: [Result<KafkaDeliveryReport, KafkaError>?]? = state.withLock { state in
            state.results[index] = report
            state.remaining -= 1
            return state.remaining == 0 ? state.results : nil
        }
        guard let finished else { return }
        // The continuation is stored before the first message is produced.
        continuation.withLock { $0?.resume(returning: finished.map { $0! }) }
        slots.deinitialize(count: finished.count)
        slots.deallocate()
        keepAlive?.release()
        keepAlive = nil
    }
}

struct DeliverySlot {
    let batch: Unmanaged<DeliveryBatch>
    let index: Int
}

private func kafkaDeliveryCallback(
    _ handle: OpaquePointer?, _ message: UnsafePointer<rd_kafka_message_t>?, _ opaque: UnsafeMutableRawPointer?
) {
    guard let message, let slot = message.pointee._private else { return }
    DeliveryBatch.deliver(slot, message)
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
            let thread = Thread {
                ThreadName.set("kafka-blocking")
                continuation.resume(with: Result { try body() })
            }
            thread.name = "kafka-blocking"
            thread.start()
        }
    }

    static func run(_ body: @escaping @Sendable () -> Void) async {
        _ = try? await run { () throws -> Void in body() }
    }
}
