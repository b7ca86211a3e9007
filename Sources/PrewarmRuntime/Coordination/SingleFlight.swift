/// One computation per key at a time in this process: callers asking for a key already in
/// flight wait for that computation's result instead of starting their own (a cache rebuilt
/// by one request, not thousands). The computation runs in a task of its own, so a waiter
/// that is cancelled stops nobody else.
public actor SingleFlight<Key: Hashable & Sendable, Value: Sendable> {
    private var inFlight: [Key: Task<Value, any Error>] = [:]
    /// How many computations started: what a test counts.
    public private(set) var started = 0

    public init() {}

    public func run(_ key: Key, _ body: @escaping @Sendable () async throws -> Value) async throws -> Value {
        if let task = inFlight[key] { return try await task.value }
        started += 1
        // Isolated to this actor like `run`, so it cannot end before it is in `inFlight`.
        let task = Task<Value, any Error> {
            defer { self.finished(key) }
            return try await body()
        }
        inFlight[key] = task
        return try await task.value
    }

    private func finished(_ key: Key) {
        inFlight[key] = nil
    }
}
