/// Something did not happen within its bound (a group join, a readiness check).
public struct TimedOut: Error, CustomStringConvertible, ClassifiedError {
    public let what: String
    public let after: Duration
    public init(_ what: String, after: Duration) {
        self.what = what
        self.after = after
    }
    public var failureKind: FailureKind { .transient }
    public var description: String { "\(what): no answer within \(after)" }
}

/// Runs `body`, giving up with `TimedOut` after `limit`.
public func withTimeout<T: Sendable>(
    _ limit: Duration, _ what: String, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: limit)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else { throw TimedOut(what, after: limit) }
        return value
    }
}
