import Synchronization

/// Counts shared by the tasks of a test (an `Atomic` cannot be captured by a closure).
final class Tally: Sendable {
    private let value = Atomic<Int>(0)
    private let peak = Atomic<Int>(0)

    var count: Int { value.load(ordering: .relaxed) }
    /// The highest count seen.
    var highest: Int { peak.load(ordering: .relaxed) }

    /// Adds one; returns the new count.
    @discardableResult
    func up() -> Int {
        let now = value.wrappingAdd(1, ordering: .relaxed).newValue
        _ = peak.max(now, ordering: .relaxed)
        return now
    }

    func down() { value.subtract(1, ordering: .relaxed) }
    func reset() { value.store(0, ordering: .relaxed) }
}

/// Values collected by the tasks of a test.
final class Collected<Element: Sendable>: Sendable {
    private let values = Mutex<[Element]>([])

    var all: [Element] { values.withLock { $0 } }
    func append(_ value: Element) { values.withLock { $0.append(value) } }
}
