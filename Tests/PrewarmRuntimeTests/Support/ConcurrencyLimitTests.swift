import Testing

@testable import PrewarmRuntime

@Suite("Bounded concurrency")
struct BoundedConcurrencyTests {
    @Test("never more than the limit at once, every body run, in arrival order when they wait")
    func limit() async throws {
        let limit = ConcurrencyLimit(5)
        let ran = Tally()
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<100 {
                group.addTask {
                    try await limit.run {
                        try await Task.sleep(for: .milliseconds(2))
                        ran.up()
                    }
                }
            }
            try await group.waitForAll()
        }
        let elapsed = ContinuousClock.now - start
        #expect(ran.count == 100)
        #expect(limit.highestInFlight == 5)
        #expect(limit.inFlight == 0)
        // The slots' time taken: every body held one for its 2 ms at least, and never more
        // than the 5 slots over the whole time.
        let busy = limit.busySeconds
        let wall = elapsed.seconds
        #expect(busy >= 0.2 && busy <= 5 * wall, "\(busy) s of slots over \(wall) s")
        try await Task.sleep(for: .milliseconds(20))
        #expect(limit.busySeconds == busy, "no slot taken, no time added")
    }

    @Test("a waiter cancelled before its turn leaves the queue without taking a slot")
    func cancelledWaiter() async throws {
        let limit = ConcurrencyLimit(1)
        let release = AsyncStream<Void>.makeStream()
        let holder = Task { try await limit.run { for await _ in release.stream { return } } }
        try await Task.sleep(for: .milliseconds(50))
        let waiter = Task { try await limit.run { "ran" } }
        try await Task.sleep(for: .milliseconds(50))
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        release.continuation.yield()
        try await holder.value
        #expect(try await limit.run { "next" } == "next", "the slot is free again")
        #expect(limit.inFlight == 0)
    }

    @Test("concurrentMap keeps the order of its elements and its limit; the first error stops it")
    func concurrentMapOrder() async throws {
        let running = Tally()
        let doubled = try await concurrentMap(Array(0..<40), limit: 4) { value in
            running.up()
            try await Task.sleep(for: .milliseconds(Int.random(in: 1...5)))
            running.down()
            return value * 2
        }
        #expect(doubled == (0..<40).map { $0 * 2 })
        #expect(running.highest <= 4)
        struct Boom: Error {}
        await #expect(throws: Boom.self) {
            _ = try await concurrentMap(Array(0..<10), limit: 2) { value in
                if value == 3 { throw Boom() }
                return value
            }
        }
        let results = await concurrentResults(Array(0..<6), limit: 3) { value in
            if value % 2 == 1 { throw Boom() }
            return value
        }
        #expect(results.map { (try? $0.get()) ?? -1 } == [0, -1, 2, -1, 4, -1], "each outcome kept, in order")
    }
}
