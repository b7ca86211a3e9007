import Foundation

/// A program of this package started by a test, to be paused, resumed or killed.
public final class TestProcess: Sendable {
    public let pid: pid_t

    private init(pid: pid_t) { self.pid = pid }

    /// Starts `.build/debug/<product>` with the test's environment.
    public static func start(_ product: String, _ arguments: [String]) throws -> TestProcess {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let process = Process()
        process.executableURL = root.appendingPathComponent(".build/debug/\(product)")
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        return TestProcess(pid: process.processIdentifier)
    }

    public func signal(_ number: Int32) { _ = Foundation.kill(pid, number) }

    public func kill() { signal(SIGKILL) }

    /// The lines of a file a test process writes, or none yet.
    public static func lines(_ path: String) -> [String] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").map(String.init)
    }
}
