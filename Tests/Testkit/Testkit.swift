import Foundation
import Kafka
import Logging
import PrewarmConfiguration
import PrewarmRuntime
import Redis

/// Processes for the tests that stop, kill or signal a real worker:
///
/// - `prewarm-testkit lease-hold KEY TTL_MS OUTPUT_FILE`: takes the lease and holds it
///   (renewed) until it is lost, writing what happens to OUTPUT_FILE, for a test that
///   SIGSTOPs it past the TTL.
/// - `prewarm-testkit worker`: `TestkitWorker`, a worker declared like the real ones and run
///   through `Worker.main`, its behaviour set by `PREWARM_TESTKIT_*` variables (see there).
@main
enum Testkit {
    static let usage =
        "usage: prewarm-testkit lease-hold KEY TTL_MS OUTPUT | worker [--flag value ...] | lifecycle ROUNDS OUTPUT\n"

    static func main() async {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == "worker" {
            await Worker.main(TestkitWorker.self, arguments: Array(arguments.dropFirst()))
        }
        if arguments.count == 3, arguments[0] == "lifecycle", let rounds = Int(arguments[1]) {
            let output = Output(path: arguments[2])
            do {
                try await lifecycle(rounds: rounds, output: output)
                exit(0)
            } catch {
                output.write("error: \(error)")
                exit(1)
            }
        }
        guard arguments.count == 4, arguments[0] == "lease-hold", let ttl = Int(arguments[2]) else {
            FileHandle.standardError.write(Data(usage.utf8))
            exit(64)
        }
        let output = Output(path: arguments[3])
        do {
            try await holdLease(key: arguments[1], ttl: .milliseconds(ttl), output: output)
            output.write("exited")
        } catch {
            output.write("error: \(error)")
            exit(1)
        }
    }

    /// Runs `TestkitWorker` (configured by the environment) `rounds` times in this process,
    /// writing the worker's own threads (Redis, PostgreSQL, Kafka) while it runs and after it
    /// stopped: a run that leaves none behind closed every pool and client.
    static func lifecycle(rounds: Int, output: Output) async throws {
        let environment = ProcessInfo.processInfo.environment
        output.write("before " + ownThreads().joined(separator: ","))
        for round in 0..<rounds {
            let settings = try WorkerSettings.of(TestkitWorker.self, environment: environment)
            let stop = WorkerStop()
            let listening = AsyncStream<Int>.makeStream()
            let task = Task {
                try await Worker.run(TestkitWorker.self, settings: settings, stop: stop) {
                    listening.continuation.yield($0)
                }
            }
            var ports = listening.stream.makeAsyncIterator()
            _ = await ports.next()
            try await Task.sleep(for: .seconds(1))
            output.write("running \(round) " + ownThreads().joined(separator: ","))
            await stop.stop()
            try await task.value
            // A thread whose loop has ended may take a moment to leave the kernel's list.
            let settled = ContinuousClock.now + .seconds(1)
            while !ownThreads().isEmpty && ContinuousClock.now < settled {
                try await Task.sleep(for: .milliseconds(20))
            }
            output.write("stopped \(round) " + ownThreads().joined(separator: ","))
        }
    }

    /// Names of this process's threads that belong to a client: Redis and PostgreSQL
    /// connections, the Kafka consumer and producer, librdkafka's own (`rdk:`).
    static func ownThreads() -> [String] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        return tasks.compactMap { task in
            (try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }.filter { ["redis", "postgres"].contains($0) || $0.hasPrefix("kafka") || $0.hasPrefix("rdk:") }.sorted()
    }

    static func holdLease(key: String, ttl: Duration, output: Output) async throws {
        let environment = EnvironmentReader(ProcessInfo.processInfo.environment)
        let redis = try await RedisConnection.connect(try environment.redis(clientName: "testkit"))
        guard let lease = try await RedisLease.acquire(key, ttl: ttl, on: redis) else {
            output.write("busy")
            return
        }
        output.write("acquired \(lease.token)")
        do {
            try await lease.holding(logger: Logger(label: "testkit")) {
                try await Task.sleep(for: .seconds(3600))
            }
        } catch let lost as LeaseLost {
            output.write("lost: \(lost.reason)")
        }
        // What a fenced holder might still try: both must fail against the new owner.
        do {
            try await lease.renew()
            output.write("renew: accepted")
        } catch {
            output.write("renew: refused")
        }
        output.write("release: \(try await lease.release())")
        output.write("done")
        await redis.close()
    }
}

final class Output: Sendable {
    let path: String

    init(path: String) {
        self.path = path
        if !FileManager.default.fileExists(atPath: path) {
            _ = FileManager.default.createFile(atPath: path, contents: nil)
        }
    }

    func write(_ line: String) {
        guard let handle = FileHandle(forWritingAtPath: path) else { return }
        handle.seekToEndOfFile()
        handle.write(Data((line + "\n").utf8))
        try? handle.close()
    }
}
