import Foundation
import Kafka
import Logging
import PrewarmConfiguration
import PrewarmRuntime
import Redis

/// Processes for the tests that stop, kill or signal a real worker:
///
/// - `prewarm-testkit lease-hold KEY TTL_MS OUTPUT_FILE`: takes the lease, keeps renewing
///   it, and writes what happens to OUTPUT_FILE, for a test that SIGSTOPs it past the TTL.
/// - `prewarm-testkit consume TOPIC GROUP PREFIX BATCH_DELAY_MS OUTPUT_FILE`: a worker on
///   the consume loop that counts each message it processes in the Redis hash PREFIX (so a
///   test sees at-least-once), pausing BATCH_DELAY_MS in every batch; SIGTERM shuts it down
///   gracefully, as Kubernetes does.
@main
struct Testkit {
    static let usage =
        "usage: prewarm-testkit lease-hold KEY TTL_MS OUTPUT | consume TOPIC GROUP PREFIX DELAY_MS OUTPUT\n"

    static func main() async {
        let arguments = Array(CommandLine.arguments.dropFirst())
        guard let output = arguments.last.map(Output.init(path:)) else {
            FileHandle.standardError.write(Data(usage.utf8))
            exit(64)
        }
        do {
            switch (arguments.first, arguments.count) {
            case ("lease-hold", 4):
                guard let ttl = Int(arguments[2]) else { throw InvalidMessage(usage) }
                try await holdLease(key: arguments[1], ttl: .milliseconds(ttl), output: output)
            case ("consume", 6):
                guard let delay = Int(arguments[4]) else { throw InvalidMessage(usage) }
                try await consume(
                    topic: arguments[1], group: arguments[2], prefix: arguments[3], delay: .milliseconds(delay),
                    output: output)
            default:
                throw InvalidMessage(usage)
            }
            output.write("exited")
        } catch {
            output.write("error: \(error)")
            exit(1)
        }
    }

    struct Counting: TopicHandler {
        let redis: RedisConnection
        let prefix: String
        let delay: Duration

        func decode(_ message: KafkaMessage) throws -> String { message.valueString }

        func handle(_ batch: [Decoded<String>]) async throws {
            try await redis.send("SET", prefix + ":in-batch", batch[0].message.offset)
            try await Task.sleep(for: delay)
            _ = try await redis.pipeline(batch.map { RedisCommand("HINCRBY", prefix, $0.value, 1) })
        }
    }

    /// A worker started exactly as the real ones are, through `Worker.run`.
    static func consume(topic: String, group: String, prefix: String, delay: Duration, output: Output) async throws {
        var environment = ProcessInfo.processInfo.environment
        for (name, value) in [
            "PREWARM_KAFKA_SESSION_TIMEOUT_MS": "6000", "PREWARM_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
            "PREWARM_BATCH_MAX_MESSAGES": "20", "PREWARM_BATCH_MAX_WAIT_MS": "100", "PREWARM_ADMIN_PORT": "0",
        ] where environment[name] == nil {
            environment[name] = value
        }
        let settings = try WorkerSettings(
            worker: "testkit-worker", group: group, environment: environment, needsPostgres: false)
        output.write("started")
        try await Worker.run(settings) { dependencies in
            [TopicRoute(topic: topic, handler: Counting(redis: dependencies.redis, prefix: prefix, delay: delay))]
        } onAdminListening: { port in
            output.write("admin \(port)")
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
