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
        let process = Process()
        process.executableURL = root.appendingPathComponent(".build/debug/\(product)")
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = FileHandle.nullDevice
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            guard ContinuousClock.now < deadline else {
                process.terminate()
                throw TimedOut(description: "\(product) \(arguments) still running after \(timeout)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return (process.terminationStatus, text)
    }

    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    public func signal(_ number: Int32) { _ = Foundation.kill(pid, number) }

    public func kill() { signal(SIGKILL) }

    /// The lines of a file a test process writes, or none yet.
    public static func lines(_ path: String) -> [String] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").map(String.init)
    }
}
