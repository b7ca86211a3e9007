import BlockingIO
import Foundation
import Kafka
import Postgres
import Redis

/// Finds the local services that `make test` (scripts/with-services.sh) starts, through the
/// same `PREWARM_*` variables the workers read. A missing service fails the test with a
/// message saying how to start it; integration tests never skip.
public enum TestEnvironment {
    public static let values = ProcessInfo.processInfo.environment

    public struct Missing: Error, CustomStringConvertible {
        public let description: String
    }

    public static func require(_ name: String) throws -> String {
        guard let value = values[name], !value.isEmpty else {
            throw Missing(
                description: "\(name) is not set: run the tests with `make test`, or start the services with "
                    + "`make services-up` and export `scripts/services.sh env`")
        }
        return value
    }

    /// The nodes of the local Redis Cluster (`scripts/services.sh start redis-cluster`).
    public static func redisClusterNodes() throws -> [RedisSlotMap.Node] {
        try require("PREWARM_DEV_REDIS_CLUSTER_NODES").split(separator: ",").map { address in
            let parts = address.split(separator: ":")
            guard parts.count == 2, let port = Int(parts[1]) else {
                throw Missing(description: "PREWARM_DEV_REDIS_CLUSTER_NODES: '\(address)' is not host:port")
            }
            return RedisSlotMap.Node(host: String(parts[0]), port: port)
        }
    }

    /// A configuration of one cluster node, with the dev password.
    public static func redis(node: RedisSlotMap.Node) throws -> RedisConfiguration {
        RedisConfiguration(
            endpoint: .tcp(host: node.host, port: node.port), password: try require("PREWARM_REDIS_PASSWORD"))
    }

    public static func redis(
        password: String?? = .none, clientName: String? = nil, retryAfterConnectionLoss: Bool = true,
        commandTimeout: Double = 5
    ) throws -> RedisConfiguration {
        let resolved: String? = try password ?? .some(require("PREWARM_REDIS_PASSWORD"))
        return RedisConfiguration(
            endpoint: .tcp(host: try require("PREWARM_REDIS_HOST"), port: Int(try require("PREWARM_REDIS_PORT"))!),
            password: resolved, database: Int(values["PREWARM_REDIS_DB"] ?? "") ?? 0, commandTimeout: commandTimeout,
            clientName: clientName, retryAfterConnectionLoss: retryAfterConnectionLoss)
    }

    /// A connection to Redis database `database`, emptied first: process tests that run a
    /// worker on a database of their own (the suite's tests one at a time). Closed after the
    /// test.
    public static func emptyRedisDatabase(_ database: Int) async throws -> RedisConnection {
        var configuration = try redis()
        configuration.database = database
        let connection = try await RedisConnection.connect(configuration)
        closeAfterTest { await connection.close() }
        try await connection.send("FLUSHDB")
        return connection
    }

    public static var redisSocket: String { get throws { try require("PREWARM_DEV_REDIS_SOCKET") } }
    public static var redisPassword: String { get throws { try require("PREWARM_REDIS_PASSWORD") } }

    /// `searchPath` puts the connection in a schema of the test's own.
    public static func postgres(password: String?? = .none, searchPath: String? = nil) throws -> PostgresConfiguration {
        let resolved: String? = try password ?? .some(require("PREWARM_POSTGRES_PASSWORD"))
        let options = searchPath.map { " options='-c search_path=\($0)'" } ?? ""
        return PostgresConfiguration(
            conninfo: try require("PREWARM_POSTGRES_URL") + options,
            password: resolved,
            applicationName: "prewarm-tests")
    }

    /// The running dev broker's bootstrap list.
    public static var kafkaBootstrap: String {
        get throws {
            let file = try require("PREWARM_KAFKA_BOOTSTRAP_FILE")
            guard let text = try? String(contentsOfFile: file, encoding: .utf8), !text.isEmpty else {
                throw Missing(
                    description: "the dev broker's bootstrap file \(file) is missing: is the dev broker running?")
            }
            return text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }

    public static var devBrokerControlFile: String { get throws { try require("PREWARM_DEV_BROKER_CONTROL_FILE") } }

    /// The Kafka the tests run against (`PREWARM_DEV_KAFKA`): `mock`, librdkafka's own mock
    /// cluster (the default), or `noida`, an independent Kafka-protocol broker.
    public static var broker: DevKafka { DevKafka(rawValue: values["PREWARM_DEV_KAFKA"] ?? "mock") ?? .mock }

    public enum DevKafka: String, Sendable {
        case mock, noida

        /// The mock's fault API (brokers down, request errors, latency): the mock only.
        public var injectsFaults: Bool { self == .mock }
        /// A member that died without leaving (kill -9), or stopped answering past its session
        /// (SIGSTOP), is evicted after its session times out, and its partitions handed on:
        /// noida never evicts one (its group stays stuck for good), so tests that kill or stop
        /// a consumer run on the mock only.
        public var evictsDeadMembers: Bool { self == .mock }

        /// How long a new member may take to be given its partitions: noida's joins take about
        /// 30 s on a quiet machine and more while the suite's other groups join beside them.
        public var groupJoinTimeout: Duration { self == .mock ? .seconds(60) : .seconds(180) }
    }

    /// A name no other test (or earlier run) uses.
    public static func uniqueName(_ prefix: String) -> String {
        "\(prefix)_\(UInt64(Date().timeIntervalSince1970 * 1000) % 100_000_000)_\(UInt32.random(in: 0...UInt32.max))"
    }
}

/// Polls `condition` until it holds or `timeout` passes: tests wait on conditions, never on
/// fixed sleeps that a slow machine could outrun.
public func eventually(
    timeout: Duration = .seconds(30), pollEvery interval: Duration = .milliseconds(50),
    _ what: @autoclosure () -> String, _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while try await !condition() {
        guard ContinuousClock.now < deadline else {
            throw TimedOut(description: "timed out after \(timeout) waiting for \(what())")
        }
        try await Task.sleep(for: interval)
    }
}

public struct TimedOut: Error, CustomStringConvertible {
    public let description: String
}

extension TestEnvironment {
    /// A TCP port free on 127.0.0.1 now, below the ephemeral range, for a server a test starts.
    public static func freePort() throws -> Int { try FreePort.next() }
}
