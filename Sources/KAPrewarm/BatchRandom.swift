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
    private var state = UInt64.random(in: .min ... .max)

    init(expiryBase: Int64, jitter: Int) {
        self.expiryBase = expiryBase
        self.jitterRange = UInt64(max(jitter, 0)) + 1
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// The base plus 0 to the jitter, uniform (the modulo's bias is below 2^-40).
    mutating func expiry() -> Int64 { expiryBase + Int64(next() % jitterRange) }
}
