import PrewarmRuntime
import Testing

@Suite("A warning that could repeat on every request")
struct LogThrottleTests {
    @Test("the first is logged at once; the rest of the interval only counted; the next line says how many")
    func oncePerInterval() {
        let throttle = LogThrottle(every: .seconds(5))
        let start = ContinuousClock.now
        #expect(throttle.admit(now: start) == (true, 0))
        for second in 1...4 { #expect(throttle.admit(now: start + .seconds(second)).log == false) }
        #expect(throttle.admit(now: start + .milliseconds(4_999)).log == false)
        #expect(throttle.admit(now: start + .seconds(5)) == (true, 5))
        #expect(throttle.admit(now: start + .seconds(6)).log == false)
        #expect(throttle.admit(now: start + .seconds(60)) == (true, 1))
    }
}
