import Logging

/// How an operation is retried: backoff between attempts, how many attempts in all (nil:
/// until it succeeds or the task is cancelled) and which failures are worth another try.
/// The default asks `Failure.kind`, so an outage is retried and bad input is not, the same
/// way everywhere.
public struct RetryPolicy: Sendable {
    public var backoff: Backoff
    public var maxAttempts: Int?
    public var retryable: @Sendable (any Error) -> Bool

    public init(
        backoff: Backoff = Backoff(), maxAttempts: Int? = nil,
        retryable: @escaping @Sendable (any Error) -> Bool = { Failure.kind(of: $0) == .transient }
    ) {
        self.backoff = backoff
        self.maxAttempts = maxAttempts
        self.retryable = retryable
    }
}

/// Runs `body` until it succeeds, retrying what `policy` calls retryable after a jittered
/// backoff, and logging each retry with `what`. `onRetry` hears the attempt number (1 for the
/// first retry) and the error, e.g. to count it or to raise an alert once it has gone on too
/// long. A cancelled task stops waiting and throws `CancellationError`.
public func retrying<T: Sendable>(
    _ what: String, policy: RetryPolicy, logger: Logger,
    onRetry: (Int, any Error) async -> Void = { _, _ in },
    _ body: () async throws -> T
) async throws -> T {
    var attempt = 0
    while true {
        do {
            return try await body()
        } catch {
            attempt += 1
            guard policy.retryable(error), !(error is CancellationError), !Task.isCancelled,
                policy.maxAttempts.map({ attempt < $0 }) ?? true
            else { throw error }
            let delay = policy.backoff.delay(attempt: attempt - 1)
            logger.warning(
                "\(what) failed, retrying",
                metadata: ["attempt": "\(attempt)", "retry_in": "\(delay)", "error": "\(error)"])
            await onRetry(attempt, error)
            try await Task.sleep(for: delay)
        }
    }
}
