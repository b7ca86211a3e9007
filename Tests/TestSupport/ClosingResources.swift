import Synchronization
import Testing

/// What a test opened (connections, clients) and must close before it ends: the test scope
/// awaits every close after the body, whether it passed or threw, so nothing a test opened
/// outlives it (unlike a fire-and-forget `Task` in a `defer`).
public final class TestResources: Sendable {
    @TaskLocal static var current: TestResources?

    private let closers = Mutex<[@Sendable () async -> Void]>([])

    func closeAll() async {
        // Latest first, like `defer`.
        for close in closers.withLock({ $0.reversed() }) { await close() }
    }

    func add(_ close: @escaping @Sendable () async -> Void) {
        closers.withLock { $0.append(close) }
    }
}

/// Registers `close` to run when the test ends. Needs the `.closesResources` trait on the
/// test or its suite.
public func closeAfterTest(_ close: @escaping @Sendable () async -> Void) {
    guard let resources = TestResources.current else {
        Issue.record("closeAfterTest needs the .closesResources trait on the test or its suite")
        return
    }
    resources.add(close)
}

/// A trait that gives each test a scope in which `closeAfterTest` registers what to close.
public struct ClosingResources: TestTrait, SuiteTrait, TestScoping {
    public var isRecursive: Bool { true }

    public func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        guard testCase != nil else { return try await function() }
        let resources = TestResources()
        try await TestResources.$current.withValue(resources) {
            do {
                try await function()
            } catch {
                await resources.closeAll()
                throw error
            }
            await resources.closeAll()
        }
    }
}

extension Trait where Self == ClosingResources {
    /// Each test closes what it registered with `closeAfterTest` before it ends.
    public static var closesResources: ClosingResources { ClosingResources() }
}
