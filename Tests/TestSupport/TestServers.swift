import DevBroker
import Foundation
import Redis

extension TestEnvironment {
    /// A new topic with a unique name on the running dev broker.
    @discardableResult
    public static func createTopic(_ prefix: String = "test.topic", partitions: Int) throws -> String {
        try createTopic(named: uniqueName(prefix), partitions: partitions)
    }

    @discardableResult
    public static func createTopic(named name: String, partitions: Int) throws -> String {
        try DevBrokerControlClient(controlFile: try devBrokerControlFile).send("topic-create \(name) \(partitions)")
        return name
    }
}

/// A Redis server of a test's own (Debian's redis-server, no persistence), for tests that
/// stop and restart it: stopping the shared one would disturb the tests running beside.
/// It runs daemonized with a pidfile, so stopping it is a signal and a check, with no child
/// process for Foundation to reap.
public final class PrivateRedisServer: Sendable {
    public let port: Int
    private let directory: String

    public init() throws {
        port = Int.random(in: 20_000...29_999)
        directory =
            FileManager.default.temporaryDirectory.appendingPathComponent("prewarm-redis-\(port)-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    public var configuration: RedisConfiguration {
        RedisConfiguration(endpoint: .tcp(host: "127.0.0.1", port: port), connectTimeout: 0.5, commandTimeout: 2)
    }

    private var pidFile: String { directory + "/redis.pid" }

    public func start() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/redis-server")
        process.arguments = [
            "--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory,
            "--daemonize", "yes", "--pidfile", pidFile, "--logfile", directory + "/redis.log",
        ]
        try process.run()
        try await eventually(timeout: .seconds(10), "redis-server on port \(port) to answer") {
            guard let connection = try? await RedisConnection.connect(self.configuration) else { return false }
            await connection.close()
            return true
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
