import Logging
import Redis
import Testing

@testable import PrewarmRuntime

@Suite("Retry with backoff")
struct RetryingTests {
    let fast = Backoff(initial: .milliseconds(1), maximum: .milliseconds(5))

    @Test("an outage is retried until it ends; every retry is heard")
    func transient() async throws {
        let calls = Tally()
        let heard = Collected<Int>()
        let value = try await retrying(
            "read", policy: RetryPolicy(backoff: fast), logger: Logger(label: "test"),
            onRetry: { attempt, _ in heard.append(attempt) }
        ) {
            if calls.up() < 4 {
                throw RedisError(.connectionFailed, operation: "GET", message: "refused")
            }
            return "value"
        }
        #expect(value == "value" && calls.count == 4)
        #expect(heard.all == [1, 2, 3])
    }

    @Test("bad input is not retried; a bounded policy gives up after its attempts")
    func permanentAndBounded() async throws {
        let calls = Tally()
        await #expect(throws: InvalidMessage.self) {
            try await retrying("write", policy: RetryPolicy(backoff: fast), logger: Logger(label: "test")) {
                calls.up()
                throw InvalidMessage("no such store")
            }
        }
        #expect(calls.count == 1)
        calls.reset()
        await #expect(throws: RedisError.self) {
            try await retrying(
                "write", policy: RetryPolicy(backoff: fast, maxAttempts: 3), logger: Logger(label: "test")
            ) {
                calls.up()
                throw RedisError(.timeout, operation: "SET", message: "slow")
            }
        }
        #expect(calls.count == 3)
    }

    @Test("a cancelled task stops waiting")
    func cancelled() async throws {
        let task = Task {
            try await retrying(
                "forever", policy: RetryPolicy(backoff: Backoff(initial: .seconds(30), maximum: .seconds(30))),
                logger: Logger(label: "test")
            ) { throw RedisError(.timeout, operation: "GET", message: "slow") }
        }
        try await Task.sleep(for: .milliseconds(100))
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
    }
}
