import Foundation

/// A program of this package started by a test, to be paused, resumed or killed.
public final class TestProcess: Sendable {
    public let pid: pid_t

    private init(pid: pid_t) { self.pid = pid }

    /// Starts `.build/debug/<product>` with the test's environment, overlaid with `environment`.
    public static func start(
        _ product: String, _ arguments: [String], environment: [String: String] = [:]
    ) throws -> TestProcess {
        let process = Process()
        process.executableURL = root.appendingPathComponent(".build/debug/\(product)")
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        return TestProcess(pid: process.processIdentifier)
    }

    /// Runs `.build/debug/<product>` to its end (short runs: output stays under a pipe's
    /// buffer); returns its exit status and what it wrote to stderr. Polls instead of
    /// `waitUntilExit`, which would block a cooperative thread.
    public static func run(
        _ product: String, _ arguments: [String], environment: [String: String] = [:],
        timeout: Duration = .seconds(30)
    ) async throws -> (status: Int32, stderr: String) {
        try await runTool(
            root.appendingPathComponent(".build/debug/\(product)").path, arguments, environment: environment,
            timeout: timeout)
    }

    /// `run` for any program, by path. Spawned and reaped here with posix_spawn and
    /// waitpid: Foundation's `Process` misses some exits on Linux (the child stays a zombie
    /// and `isRunning` stays true), and `waitUntilExit` would block a cooperative thread.
    public static func runTool(
        _ path: String, _ arguments: [String], environment: [String: String] = [:],
        timeout: Duration = .seconds(30)
    ) async throws -> (status: Int32, stderr: String) {
        let errorFile = FileManager.default.temporaryDirectory.appendingPathComponent(
            "prewarm-stderr-\(UUID().uuidString)"
        ).path
        defer { try? FileManager.default.removeItem(atPath: errorFile) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, errorFile, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let variables = ProcessInfo.processInfo.environment.merging(environment) { $1 }.map { "\($0.key)=\($0.value)" }
        var pid: pid_t = 0
        let spawned = withCStringArray([path] + arguments) { argv in
            withCStringArray(variables) { envp in posix_spawn(&pid, path, &actions, nil, argv, envp) }
        }
        guard spawned == 0 else {
            throw TestEnvironment.Missing(description: "could not start \(path): \(String(cString: strerror(spawned)))")
        }
        let deadline = ContinuousClock.now + timeout
        var status: Int32 = 0
        while waitpid(pid, &status, WNOHANG) == 0 {
            guard ContinuousClock.now < deadline else {
                Foundation.kill(pid, SIGKILL)
                _ = waitpid(pid, &status, 0)
                throw TimedOut(description: "\(path) \(arguments) still running after \(timeout)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        let exitStatus = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        let text = (try? String(contentsOfFile: errorFile, encoding: .utf8)) ?? ""
        return (exitStatus, text)
    }

    private static func withCStringArray<T>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> T) -> T {
        let pointers = strings.map { strdup($0) } + [nil]
        defer { pointers.forEach { free($0) } }
        return body(pointers)
    }

    public static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    public func signal(_ number: Int32) { _ = Foundation.kill(pid, number) }

    public func kill() { signal(SIGKILL) }

    /// The lines of a file a test process writes, or none yet.
    public static func lines(_ path: String) -> [String] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").map(String.init)
    }
}
