import CoreMetrics
import Foundation
import Logging
import Postgres
import PrewarmRuntime
import Redis
import Synchronization

/// A batch's random draws: expiries (the base plus a uniform jitter) and sampling, from
/// SplitMix64 seeded once per batch (a system draw per key would be a syscall each).
struct BatchRandom {
    let expiryBase: Int64
    let jitterRange: UInt64
    private var random = SplitMix64(seed: UInt64.random(in: .min ... .max))

    init(expiryBase: Int64, jitter: Int) {
        self.expiryBase = expiryBase
        self.jitterRange = UInt64(max(jitter, 0)) + 1
    }

    mutating func next() -> UInt64 { random.next() }

    /// The base plus 0 to the jitter, uniform (the modulo's bias is below 2^-40).
    mutating func expiry() -> Int64 { expiryBase + Int64(next() % jitterRange) }
}
