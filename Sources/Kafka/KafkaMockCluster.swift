import CRdKafka
import Foundation
import Logging

/// librdkafka's in-process mock cluster: real Kafka protocol on random local ports, with
/// consumer groups and fault injection. `prewarmctl dev-broker` serves one for the demo
/// and the tests. Its limits (librdkafka 2.0.2) are listed on `KafkaAdmin`.
public final class KafkaMockCluster: Sendable {
    private let handle: KafkaHandle
    private let cluster: MockClusterPointer
    public let brokerCount: Int
    /// The `host:port,...` list clients connect to.
    public let bootstrapServers: String

    public init(brokers: Int = 3, logger: Logger = Logger(label: "prewarm.kafka.mock")) throws {
        handle = try KafkaHandle(kind: .producer, properties: KafkaProperties(), logger: logger)
        guard let pointer = rd_kafka_mock_cluster_new(handle.pointer, Int32(brokers)) else {
            handle.destroy()
            throw KafkaError(code: RD_KAFKA_RESP_ERR__FAIL.rawValue, operation: "start mock cluster", message: "failed")
        }
        cluster = MockClusterPointer(pointer: pointer)
        brokerCount = brokers
        bootstrapServers = String(cString: rd_kafka_mock_cluster_bootstraps(pointer))
        Self.disableNagle(
            ports: Set(bootstrapServers.split(separator: ",").compactMap { Int($0.split(separator: ":").last ?? "") }))
    }

    /// librdkafka 2.0's mock brokers answer with Nagle's algorithm on: with two requests in
    /// flight on a connection, the second answer waits for the client's delayed ACK, 40 ms
    /// (a produce to a dozen partitions took 50 ms instead of 1). Real brokers set
    /// TCP_NODELAY; here the brokers' listening sockets get it, and Linux passes it on to
    /// the connections they accept.
    private static func disableNagle(ports: Set<Int>) {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") else { return }
        for entry in entries {
            guard let descriptor = Int32(entry), ports.contains(localPort(of: descriptor) ?? -1) else { continue }
            var listening: Int32 = 0
            var size = socklen_t(MemoryLayout<Int32>.size)
            guard getsockopt(descriptor, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size) == 0, listening == 1 else {
                continue
            }
            var on: Int32 = 1
            _ = setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    /// The local port of an IPv4 socket, or nil.
    static func localPort(of descriptor: Int32) -> Int? {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) == 0 }
        }
        guard named, address.sin_family == sa_family_t(AF_INET) else { return nil }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    public func createTopic(_ name: String, partitions: Int, replicationFactor: Int = 1) throws {
        try KafkaError.check(
            rd_kafka_mock_topic_create(cluster.pointer, name, Int32(partitions), Int32(replicationFactor)),
            "create topic \(name)")
    }

    /// Broker ids run from 1 to `brokerCount`.
    public func setBrokerDown(_ id: Int32) throws {
        try checkBroker(id)
        try KafkaError.check(rd_kafka_mock_broker_set_down(cluster.pointer, id), "broker \(id) down")
    }

    public func setBrokerUp(_ id: Int32) throws {
        try checkBroker(id)
        try KafkaError.check(rd_kafka_mock_broker_set_up(cluster.pointer, id), "broker \(id) up")
    }

    /// Adds `milliseconds` of round-trip latency to every request the broker serves.
    public func setLatency(broker id: Int32, milliseconds: Int) throws {
        try checkBroker(id)
        try KafkaError.check(
            rd_kafka_mock_broker_set_rtt(cluster.pointer, id, Int32(milliseconds)), "latency of broker \(id)")
    }

    /// The next `count` requests of `api` (any broker) fail with `error`.
    public func failRequests(api: KafkaAPI, count: Int, error: Int32) {
        var errors = [rd_kafka_resp_err_t](repeating: rd_kafka_resp_err_t(error), count: count)
        rd_kafka_mock_push_request_errors_array(cluster.pointer, api.rawValue, count, &errors)
    }

    public func clearRequestErrors(api: KafkaAPI) {
        rd_kafka_mock_clear_request_errors(cluster.pointer, api.rawValue)
    }

    /// Stops the brokers; connected clients see them disappear.
    public func shutdown() {
        rd_kafka_mock_cluster_destroy(cluster.pointer)
        handle.destroy()
    }

    private func checkBroker(_ id: Int32) throws {
        guard id >= 1 && Int(id) <= brokerCount else {
            throw KafkaError(
                code: RD_KAFKA_RESP_ERR__INVALID_ARG.rawValue, operation: "select broker",
                message: "broker \(id) does not exist; ids are 1...\(brokerCount)")
        }
    }
}

/// `@unchecked Sendable`: the mock cluster's functions lock internally.
private struct MockClusterPointer: @unchecked Sendable {
    let pointer: OpaquePointer
}

/// Kafka protocol API keys that fault injection can target.
public enum KafkaAPI: Int16, Sendable, CaseIterable {
    case produce = 0
    case fetch = 1
    case listOffsets = 2
    case metadata = 3
    case offsetCommit = 8
    case offsetFetch = 9
    case findCoordinator = 10
    case joinGroup = 11
    case heartbeat = 12
    case leaveGroup = 13
    case syncGroup = 14
    case initProducerID = 22

    /// Accepts `Produce`, `produce`, `OffsetCommit`, `offset-commit`...
    public init?(name: String) {
        let wanted = name.lowercased().filter { $0.isLetter }
        guard let match = Self.allCases.first(where: { "\($0)".lowercased() == wanted }) else { return nil }
        self = match
    }
}
