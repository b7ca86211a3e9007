import BlockingIO
import Foundation

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// A program of this package started by a test, to be paused, resumed or killed.
public final class TestProcess: Sendable {
    public let child: ChildProcess
    /// Where the process's standard error goes.
    public let logFile: String
    public var pid: pid_t { child.pid }

    private init(child: ChildProcess, logFile: String) {
        self.child = child
        self.logFile = logFile
    }

    /// Starts `.build/debug/<product>` with the test's environment, overlaid with
    /// `environment`; what it logs goes to `logFile`.
    public static func start(
        _ product: String, _ arguments: [String], environment: [String: String] = [:]
    ) throws -> TestProcess {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent(
            "prewarm-\(product)-\(UUID().uuidString).log"
        ).path
        let child = try ChildProcess.spawn(
            root.appendingPathComponent(".build/debug/\(product)").path, arguments,
            environment: ProcessInfo.processInfo.environment.merging(environment) { $1 }, standardError: log)
        return TestProcess(child: child, logFile: log)
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

    public func signal(_ number: Int32) { child.signal(number) }

    /// Waits until `GET <base>/<route>` answers 200. Throws at once, with the end of the
    /// process's log, when the process exits first (a port taken, a bad setting), and with the
    /// same after `timeout`.
    public func waitUntilAnswering(_ base: URL, _ route: String = "healthz", timeout: Duration = .seconds(60))
        async throws
    {
        let deadline = ContinuousClock.now + timeout
        var request = URLRequest(url: base.appendingPathComponent(route))
        request.timeoutInterval = 5
        while true {
            if let (_, response) = try? await URLSession.shared.data(for: request),
                (response as? HTTPURLResponse)?.statusCode == 200
            {
                return
            }
            if let status = child.exitStatus() {
                throw ChildProcessError(
                    description: "process \(pid) exited with status \(status) before \(request.url!) answered; "
                        + "its log ends:\n" + logTail())
            }
            guard ContinuousClock.now < deadline else {
                throw TimedOut(
                    description: "\(request.url!) did not answer 200 within \(timeout); the log of process \(pid) "
                        + "ends:\n" + logTail())
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// The last lines of `logFile`.
    public func logTail(lines count: Int = 20) -> String {
        Self.lines(logFile).suffix(count).joined(separator: "\n")
    }

    public func kill() { signal(SIGKILL) }

    /// Ends the process as Kubernetes would at a test's end: SIGTERM (a consumer leaves its
    /// group, so the next test's pods get its partitions even on a broker that never evicts a
    /// dead member), then SIGKILL if it is still there after `grace`: longer than a pod's own
    /// bound on its shutdown (`PREWARM_SHUTDOWN_TIMEOUT_S`, 25 s), so a pod still leaving its
    /// group (slow on noida) is never killed into a member that broker keeps for good.
    public func stop(grace: Duration = .seconds(30)) async {
        guard child.exitStatus() == nil else { return }
        signal(SIGCONT)
        signal(SIGTERM)
        _ = try? await child.wait(timeout: grace)  // kills it when the grace is over
    }

    /// The lines of a file a test process writes, or none yet.
    public static func lines(_ path: String) -> [String] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").map(String.init)
    }
}

/// An HTTP request to a worker's admin port (or any server a test started): the status and
/// the body as text.
public func adminRequest(
    _ base: URL, _ method: String, _ path: String, token: String? = nil, body: String? = nil
) async throws -> (status: Int, body: String) {
    var request = URLRequest(url: URL(string: base.absoluteString + "/" + path)!)
    request.httpMethod = method
    if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
    if let body {
        request.httpBody = Data(body.utf8)
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
    }
    let (data, response) = try await URLSession.shared.data(for: request)
    return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
}
