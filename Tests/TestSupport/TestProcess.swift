import BlockingIO
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

    /// `run` for any program, by path.
    public static func runTool(
        _ path: String, _ arguments: [String], environment: [String: String] = [:],
        timeout: Duration = .seconds(30)
    ) async throws -> (status: Int32, stderr: String) {
        let errorFile = FileManager.default.temporaryDirectory.appendingPathComponent(
            "prewarm-stderr-\(UUID().uuidString)"
        ).path
        defer { try? FileManager.default.removeItem(atPath: errorFile) }
        let child = try ChildProcess.spawn(
            path, arguments, environment: ProcessInfo.processInfo.environment.merging(environment) { $1 },
            standardError: errorFile)
        let status = try await child.wait(timeout: timeout)
        return (status, (try? String(contentsOfFile: errorFile, encoding: .utf8)) ?? "")
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
