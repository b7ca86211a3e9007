import Testing

@testable import PrewarmRuntime

@Suite("Backoff")
struct BackoffTests {
    @Test("bounds double from the initial delay up to the maximum; delays stay within half to full bound")
    func bounds() {
        let backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(2))
        #expect(backoff.bound(attempt: 0) == .milliseconds(100))
        #expect(backoff.bound(attempt: 3) == .milliseconds(800))
        #expect(backoff.bound(attempt: 10) == .seconds(2))
        #expect(backoff.bound(attempt: 500) == .seconds(2))
        for attempt in 0..<8 {
            let delay = backoff.delay(attempt: attempt)
            #expect(delay >= backoff.bound(attempt: attempt) / 2 && delay <= backoff.bound(attempt: attempt))
        }
    }
}
