import BlockingIO
import DevBroker
import Foundation
import Kafka
import Postgres
import Redis

extension TestEnvironment {
    /// A new topic with a unique name on the running dev broker.
    @discardableResult
    public static func createTopic(_ prefix: String = "test.topic", partitions: Int) async throws -> String {
        try await createTopic(named: uniqueName(prefix), partitions: partitions)
    }

    /// The first `count` messages of `topic` (or more), read by a group of their own.
    public static func read(_ topic: String, count: Int) async throws -> [KafkaMessage] {
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(groupID: uniqueName("reader"), bootstrapServers: kafkaBootstrap))
        try await consumer.subscribe([topic])
        var messages: [KafkaMessage] = []
        try await eventually("\(count) messages on \(topic)") {
            messages += try await consumer.poll(maxMessages: 100, timeoutMilliseconds: 100).messages
            return messages.count >= count
        }
        await consumer.close()
        return messages
    }

    /// Creates a topic on the test broker: through the dev broker's control port on the
    /// mock (its CreateTopics times out), through the admin API on an independent broker.
    @discardableResult
    public static func createTopic(named name: String, partitions: Int) async throws -> String {
        switch broker {
        case .mock:
            try DevBrokerControlClient(controlFile: try devBrokerControlFile).send("topic-create \(name) \(partitions)")
        case .noida:
            let admin = try KafkaAdmin(bootstrapServers: try kafkaBootstrap)
            do {
                try await admin.createTopics([(name: name, partitions: partitions, replicationFactor: 1, configs: [:])])
            } catch {
                await admin.close()
                throw error
            }
            await admin.close()
        }
        return name
    }
}

/// A Redis server of a test's own (Debian's redis-server, no persistence), for tests that
/// stop and restart it: stopping the shared one would disturb the tests running beside.
/// It runs daemonized with a pidfile, so stopping it is a signal and a check, with no child
/// process for Foundation to reap.
public final class PrivateRedisServer: Sendable {
    public let port: Int
    public let password: String?
    private let directory: String

    /// `password`: what clients must AUTH with (the workers' processes always send one).
    public init(password: String? = nil) throws {
        self.password = password
        // Handed out once per process: while this server is stopped, no other test's server
        // can be given its port and answer in its place when it starts again.
        port = try FreePort.next()
        directory =
            FileManager.default.temporaryDirectory.appendingPathComponent("prewarm-redis-\(port)-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    public var configuration: RedisConfiguration {
        RedisConfiguration(
            endpoint: .tcp(host: "127.0.0.1", port: port), password: password, connectTimeout: 0.5, commandTimeout: 2)
    }

    private var pidFile: String { directory + "/redis.pid" }

    public func start() async throws {
        // It daemonizes: the launcher exits at once and the server lives on.
        let (status, stderr) = try await TestProcess.runTool(
            "/usr/bin/redis-server",
            [
                "--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory,
                "--daemonize", "yes", "--pidfile", pidFile, "--logfile", directory + "/redis.log",
            ] + (password.map { ["--requirepass", $0] } ?? []))
        guard status == 0 else { throw TestEnvironment.Missing(description: "redis-server did not start: \(stderr)") }
        try await eventually(timeout: .seconds(10), "redis-server on port \(port) to answer") {
            guard let connection = try? await RedisConnection.connect(self.configuration) else { return false }
            let answer = try? await connection.send("PING")
            await connection.close()
            return answer == .status("PONG")
        }
    }

    /// Kills the server as a crash would (SIGKILL: it inherits the test process's signal
    /// mask, in which SIGTERM is blocked) and waits until its process is gone.
    public func stop() async throws {
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
            let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines))
        else { return }
        kill(pid, SIGKILL)
        try await eventually(timeout: .seconds(10), "redis-server \(pid) to exit") { kill(pid, 0) != 0 }
    }

    deinit {
        if let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
            let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines))
        {
            kill(pid, SIGKILL)
        }
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// A PostgreSQL server of a test's own, started and stopped by `scripts/services.sh` (the
/// same initdb, role and password as the shared one) under a directory and port of its own,
/// for tests that stop and restart it.
public final class PrivatePostgresServer: Sendable {
    public let port: Int
    private let directory: String

    public init() throws {
        port = try FreePort.next()  // below the ephemeral range, and never another test's
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("prewarm-pg-\(port)-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    public var configuration: PostgresConfiguration {
        get throws {
            PostgresConfiguration(
                conninfo: "host=127.0.0.1 port=\(port) dbname=prewarm user=prewarm",
                password: try TestEnvironment.require("PREWARM_POSTGRES_PASSWORD"), applicationName: "prewarm-tests",
                connectTimeout: 2)
        }
    }

    private var environment: [String: String] {
        ["PREWARM_DEV_RUN_DIR": directory, "PREWARM_DEV_POSTGRES_PORT": String(port)]
    }

    private func services(_ action: String) async throws {
        let (status, stderr) = try await TestProcess.runTool(
            TestProcess.root.appendingPathComponent("scripts/services.sh").path, [action, "postgres"],
            environment: environment, timeout: .seconds(120))
        guard status == 0 else {
            throw TestEnvironment.Missing(description: "services.sh \(action) postgres failed: \(stderr)")
        }
    }

    /// Starts it (the first start runs initdb).
    public func start() async throws { try await services("start") }

    /// A fast shutdown: connections are cut, as in a failover or a restart for maintenance.
    public func stop() async throws { try await services("stop") }

    /// Stops it and removes its data.
    public func destroy() async {
        try? await stop()
        _ = try? await TestProcess.runTool("/bin/rm", ["-rf", directory])
    }
}

/// A Redis Cluster of a test's own (3 primaries, 3 replicas, `scripts/services.sh start
/// redis-cluster` on six ports of its own), for tests that kill its nodes.
public final class PrivateRedisCluster: Sendable {
    public let ports: [Int]
    /// The nodes' cluster bus ports, handed out as the others (not port + 10000, which may be
    /// in the ephemeral range).
    private let busPorts: [Int]
    private let directory: String

    public init() throws {
        ports = try (0..<6).map { _ in try FreePort.next() }
        busPorts = try (0..<6).map { _ in try FreePort.next() }
        directory =
            FileManager.default.temporaryDirectory.appendingPathComponent("prewarm-cluster-\(ports[0])-\(UUID())").path
    }

    public var nodes: [RedisSlotMap.Node] { ports.map { RedisSlotMap.Node(host: "127.0.0.1", port: $0) } }

    private func services(_ action: String) async throws {
        let (status, stderr) = try await TestProcess.runTool(
            TestProcess.root.appendingPathComponent("scripts/services.sh").path, [action, "redis-cluster"],
            environment: [
                "PREWARM_DEV_RUN_DIR": directory,
                "PREWARM_DEV_REDIS_CLUSTER_PORTS": ports.map(String.init).joined(separator: " "),
                "PREWARM_DEV_REDIS_CLUSTER_BUS_PORTS": busPorts.map(String.init).joined(separator: " "),
            ], timeout: .seconds(60))
        guard status == 0 else {
            throw TestEnvironment.Missing(description: "services.sh \(action) redis-cluster failed: \(stderr)")
        }
    }

    public func start() async throws { try await services("start") }

    /// A client of the cluster, closed after the test, with time-outs short enough that a
    /// dead node is seen as one within a test's patience.
    public func client() async throws -> RedisClusterClient {
        let template = RedisConfiguration(
            password: try TestEnvironment.require("PREWARM_REDIS_PASSWORD"), connectTimeout: 0.5, commandTimeout: 2)
        let client = try await RedisClusterClient.connect(seeds: nodes, configuration: template)
        closeAfterTest { await client.close() }
        return client
    }

    /// Waits until every primary's writes so far are on its replica (`WAIT`): replication is
    /// asynchronous, and a replica may still be in its first sync just after the cluster was made.
    public func waitForReplicas(_ client: RedisClusterClient) async throws {
        for primary in client.slotMap.primaries {
            var configuration = client.configuration
            configuration.endpoint = .tcp(host: primary.host, port: primary.port)
            configuration.commandTimeout = 5
            let connection = try await RedisConnection.connect(configuration)
            defer { Task { await connection.close() } }
            try await eventually(timeout: .seconds(30), "\(primary)'s writes on its replica") {
                try await connection.send("WAIT", 1, 1000) == .integer(1)
            }
        }
    }

    /// Kills the node on `port` as a crash would (SIGKILL) and waits until it is gone.
    public func kill(_ port: Int) async throws {
        let file = "\(directory)/redis-cluster/\(port)/redis.pid"
        guard let text = try? String(contentsOfFile: file, encoding: .utf8),
            let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines))
        else { throw TestEnvironment.Missing(description: "no pid file for the node on \(port)") }
        Glibc.kill(pid, SIGKILL)
        try await eventually(timeout: .seconds(10), "redis-server \(pid) to exit") { Glibc.kill(pid, 0) != 0 }
    }

    /// Stops every node and removes their folders.
    public func destroy() async {
        try? await services("stop")
        _ = try? await TestProcess.runTool("/bin/rm", ["-rf", directory])
    }
}
