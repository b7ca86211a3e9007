import Synchronization

/// Metric handles made once per label set, on first use, then reused: a handle is looked up,
/// never built per call (as Hummingbird's MetricsMiddleware keeps its own).
///
///     let runs = MetricHandles { (job: String) in Counter(label: "runs_total", dimensions: [("job", job)]) }
///     runs[job].increment()
public final class MetricHandles<Key: Hashable & Sendable, Handle: Sendable>: Sendable {
    private let handles = Mutex<[Key: Handle]>([:])
    private let make: @Sendable (Key) -> Handle

    public init(_ make: @escaping @Sendable (Key) -> Handle) {
        self.make = make
    }

    public subscript(key: Key) -> Handle {
        handles.withLock { handles in
            if let handle = handles[key] { return handle }
            let handle = make(key)
            handles[key] = handle
            return handle
        }
    }
}

/// A pair of labels as one key (`MetricHandles` of two dimensions).
public struct LabelPair: Hashable, Sendable {
    public let first: String
    public let second: String

    public init(_ first: String, _ second: String) {
        self.first = first
        self.second = second
    }
}
