import CoreMetrics
import NIOCore
import Synchronization

/// Runs `body` for every element with at most `limit` at once and returns the results in
/// the elements' order. The first error cancels the rest and is thrown.
@inlinable
public func concurrentMap<Element: Sendable, T: Sendable>(
    _ elements: [Element], limit: Int, _ body: @escaping @Sendable (Element) async throws -> T
) async throws -> [T] {
    try await withThrowingTaskGroup(of: (Int, T).self) { group in
        var results = [T?](repeating: nil, count: elements.count)
        var next = 0
        for _ in 0..<min(max(limit, 1), elements.count) {
            let index = next
            group.addTask { (index, try await body(elements[index])) }
            next += 1
        }
        while let (index, value) = try await group.next() {
            results[index] = value
            if next < elements.count {
                let index = next
                group.addTask { (index, try await body(elements[index])) }
                next += 1
            }
        }
        return results.map { $0! }
    }
}

/// `concurrentMap` that keeps every outcome instead of stopping at the first error: for
/// work whose items fail on their own (one shard, one user) and are reported together.
@inlinable
public func concurrentResults<Element: Sendable, T: Sendable>(
    _ elements: [Element], limit: Int, _ body: @escaping @Sendable (Element) async throws -> T
) async -> [Result<T, any Error>] {
    (try? await concurrentMap(elements, limit: limit) { element in
        do {
            return Result<T, any Error>.success(try await body(element))
        } catch {
            return .failure(error)
        }
    }) ?? []
}
