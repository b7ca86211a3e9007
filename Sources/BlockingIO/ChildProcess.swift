import CPrewarmSystem
import Foundation
import Synchronization

/// A program started with posix_spawn and reaped with waitpid, polled from async code.
/// Foundation's `Process` on Linux can miss a child's exit (it stays a zombie and
/// `isRunning` stays true), and `waitUntilExit` blocks a cooperative thread.
public final class ChildProcess: Sendable {
    public let pid: pid_t
    /// The exit status once reaped: asking again answers the same, and no signal goes to a
    /// pid the kernel may since have given to another process.
    private let reaped = Mutex<Int32?>(nil)

    private init(pid: pid_t) { self.pid = pid }

    /// Starts `path` with `arguments` and `environment` (the whole environment, not an
    /// overlay). Standard input is /dev/null; standard output and error go to the files
    /// given (created or truncated), or to /dev/null.
    public static func spawn(
        _ path: String, _ arguments: [String], environment: [String: String],
        standardOutput: String? = nil, standardError: String? = nil
    ) throws -> ChildProcess {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(
            &actions, 1, standardOutput ?? "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        if let standardError, standardError == standardOutput {
            posix_spawn_file_actions_adddup2(&actions, 1, 2)  // one file, one offset: no overwriting
        } else {
            posix_spawn_file_actions_addopen(
                &actions, 2, standardError ?? "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        }
        // Only 0, 1 and 2 go to the child: an inherited socket would keep its peer from
        // ever seeing the parent close it.
        prewarm_spawn_close_from(&actions, 3)
        var pid: pid_t = 0
        let variables = environment.map { "\($0.key)=\($0.value)" }
        let result = withCStringArray([path] + arguments) { argv in
            withCStringArray(variables) { envp in posix_spawn(&pid, path, &actions, nil, argv, envp) }
        }
        guard result == 0 else {
            throw ChildProcessError(description: "could not start \(path): \(String(cString: strerror(result)))")
        }
        return ChildProcess(pid: pid)
    }

    /// Sends `number`, unless the process has been reaped.
    public func signal(_ number: Int32) {
        reaped.withLock { status in
            if status == nil { _ = kill(pid, number) }
        }
    }

    /// The exit status once the process has ended (128 + signal when killed by one), or
    /// nil while it runs. Reaps it the first time; later calls answer the same.
    public func exitStatus() -> Int32? {
        reaped.withLock { reaped in
            if let reaped { return reaped }
            var status: Int32 = 0
            guard waitpid(pid, &status, WNOHANG) == pid else { return nil }
            reaped = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
            return reaped
        }
    }

    /// Waits for the end, polling; after `timeout` kills it with SIGKILL and throws.
    public func wait(timeout: Duration) async throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let status = exitStatus() { return status }
            guard ContinuousClock.now < deadline else {
                signal(SIGKILL)
                reaped.withLock { reaped in
                    var status: Int32 = 0
                    if reaped == nil, waitpid(pid, &status, 0) == pid { reaped = 128 + SIGKILL }
                }
                throw ChildProcessError(description: "process \(pid) still running after \(timeout); killed")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    private static func withCStringArray<T>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> T) -> T {
        let pointers = strings.map { strdup($0) } + [nil]
        defer { pointers.forEach { free($0) } }
        return body(pointers)
    }
}

public struct ChildProcessError: Error, CustomStringConvertible {
    public let description: String

    public init(description: String) { self.description = description }
}
