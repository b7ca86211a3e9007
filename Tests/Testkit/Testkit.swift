import Foundation
import Logging
import PrewarmRuntime
import Redis

/// `prewarm-testkit lease-hold KEY TTL_MS OUTPUT_FILE`: takes the lease, keeps renewing it,
/// and writes what happens to OUTPUT_FILE, one line per event, for a test that pauses this
/// process with SIGSTOP past the TTL and resumes it.
@main
struct Testkit {
    static func main() async {
        let arguments = CommandLine.arguments
        guard arguments.count == 5, arguments[1] == "lease-hold", let ttl = Int(arguments[3]) else {
            FileHandle.standardError.write(Data("usage: prewarm-testkit lease-hold KEY TTL_MS OUTPUT_FILE\n".utf8))
            exit(64)
        }
        let output = Output(path: arguments[4])
        do {
            try await holdLease(key: arguments[2], ttl: .milliseconds(ttl), output: output)
        } catch {
            output.write("error: \(error)")
            exit(1)
        }
    }

    static func holdLease(key: String, ttl: Duration, output: Output) async throws {
        let environment = EnvironmentReader(ProcessInfo.processInfo.environment)
        let redis = try await RedisConnection.connect(try environment.redis(clientName: "testkit"))
        guard let lease = try await RedisLease.acquire(key, ttl: ttl, on: redis) else {
            output.write("busy")
            return
        }
        output.write("acquired \(lease.token)")
        let lost = AsyncStream<LeaseLost>.makeStream()
        let renewing = lease.keepRenewing(logger: Logger(label: "testkit")) { lost.continuation.yield($0) }
        for await loss in lost.stream {
            output.write("lost: \(loss.reason)")
            break
        }
        renewing.cancel()
        // What a fenced holder might still try: both must fail against the new owner.
        do {
            try await lease.renew()
            output.write("renew: accepted")
        } catch {
            output.write("renew: refused")
        }
        output.write("release: \(try await lease.release())")
        output.write("done")
    }
}

final class Output: Sendable {
    let path: String

    init(path: String) {
        self.path = path
        _ = FileManager.default.createFile(atPath: path, contents: nil)
    }

    func write(_ line: String) {
        guard let handle = FileHandle(forWritingAtPath: path) else { return }
        handle.seekToEndOfFile()
        handle.write(Data((line + "\n").utf8))
        try? handle.close()
    }
}
