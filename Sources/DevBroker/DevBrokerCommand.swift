import Kafka

/// One line of the dev broker's control protocol. Tests and `prewarmctl dev-broker fault`
/// send these to inject the faults an operator meets with a real cluster.
public enum DevBrokerCommand: Sendable, Equatable {
    case ping
    case bootstrap
    case createTopic(name: String, partitions: Int)
    case brokerDown(Int32)
    case brokerUp(Int32)
    case latency(broker: Int32, milliseconds: Int)
    case failRequests(api: KafkaAPI, count: Int, error: Int32)
    case clearRequestErrors(api: KafkaAPI)

    public static let usage = """
        ping | bootstrap | topic-create NAME PARTITIONS | broker-down ID | broker-up ID | \
        latency ID MS | request-errors API COUNT ERROR | clear-errors API
        """

    public init(parsing line: String) throws(DevBrokerCommandError) {
        let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard let verb = words.first else { throw DevBrokerCommandError("empty command; expected \(Self.usage)") }
        let arguments = Array(words.dropFirst())
        func expect(_ count: Int) throws(DevBrokerCommandError) {
            guard arguments.count == count else {
                throw DevBrokerCommandError("'\(verb)' takes \(count) argument(s), got \(arguments.count)")
            }
        }
        func number(_ index: Int, _ what: String) throws(DevBrokerCommandError) -> Int {
            guard let value = Int(arguments[index]), value >= 0 else {
                throw DevBrokerCommandError("\(what) must be a whole number >= 0, got '\(arguments[index])'")
            }
            return value
        }
        func api(_ index: Int) throws(DevBrokerCommandError) -> KafkaAPI {
            guard let api = KafkaAPI(name: arguments[index]) else {
                let known = KafkaAPI.allCases.map { "\($0)" }.joined(separator: ", ")
                throw DevBrokerCommandError("unknown API '\(arguments[index])'; known: \(known)")
            }
            return api
        }
        switch verb {
        case "ping":
            try expect(0)
            self = .ping
        case "bootstrap":
            try expect(0)
            self = .bootstrap
        case "topic-create":
            try expect(2)
            let partitions = try number(1, "PARTITIONS")
            guard partitions > 0 else { throw DevBrokerCommandError("PARTITIONS must be at least 1") }
            self = .createTopic(name: arguments[0], partitions: partitions)
        case "broker-down":
            try expect(1)
            self = .brokerDown(Int32(try number(0, "ID")))
        case "broker-up":
            try expect(1)
            self = .brokerUp(Int32(try number(0, "ID")))
        case "latency":
            try expect(2)
            self = .latency(broker: Int32(try number(0, "ID")), milliseconds: try number(1, "MS"))
        case "request-errors":
            try expect(3)
            guard let code = KafkaError.code(named: arguments[2]) else {
                throw DevBrokerCommandError("unknown Kafka error '\(arguments[2])', e.g. NOT_LEADER_FOR_PARTITION")
            }
            self = .failRequests(api: try api(0), count: try number(1, "COUNT"), error: code)
        case "clear-errors":
            try expect(1)
            self = .clearRequestErrors(api: try api(0))
        default:
            throw DevBrokerCommandError("unknown command '\(verb)'; expected \(Self.usage)")
        }
    }

    /// Applies the command to the cluster and returns the reply text.
    public func apply(to cluster: KafkaMockCluster) throws -> String {
        switch self {
        case .ping: return "pong"
        case .bootstrap: return cluster.bootstrapServers
        case .createTopic(let name, let partitions): try cluster.createTopic(name, partitions: partitions)
        case .brokerDown(let id): try cluster.setBrokerDown(id)
        case .brokerUp(let id): try cluster.setBrokerUp(id)
        case .latency(let id, let milliseconds): try cluster.setLatency(broker: id, milliseconds: milliseconds)
        case .failRequests(let api, let count, let error): cluster.failRequests(api: api, count: count, error: error)
        case .clearRequestErrors(let api): cluster.clearRequestErrors(api: api)
        }
        return "ok"
    }
}

public struct DevBrokerCommandError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
