import CoreMetrics
import Foundation
import Logging
import Postgres
import PrewarmRuntime
import Redis
import Synchronization

/// How many batches a task writes at once: from the users left, the time left before its
/// deadline and the rate measured so far, within the configured bounds.
struct Pacer {
    let options: KAOptions
    /// When the pre-warm should be done (the stream's start less a margin).
    let deadline: Date
    let startsAt: Date
    private let started = ContinuousClock.now
    private var users = 0
    private(set) var current: Int

    init(options: KAOptions, deadline: Date, startsAt: Date) {
        self.options = options
        self.deadline = deadline
        self.startsAt = startsAt
        self.current = options.minWriters
    }

    /// Users written per second so far, once there is something to measure.
    var rate: Double? {
        let elapsed = (ContinuousClock.now - started).seconds
        guard users > 0, elapsed > 0.05 else { return nil }
        return Double(users) / elapsed
    }

    /// The rate a checkpoint reports: the measured one, or for a pre-warm that wrote its
    /// users before there was time to measure, the users over the time taken.
    var reportedRate: Double? {
        rate ?? (users > 0 ? Double(users) / max((ContinuousClock.now - started).seconds, 0.001) : nil)
    }

    mutating func record(_ count: Int) { users += count }

    /// Enough writers to finish `remaining` users by the deadline at the measured rate per
    /// writer; the most allowed once the deadline is near or passed.
    mutating func writers(remaining: Int64) -> Int {
        let left = deadline.timeIntervalSinceNow
        if left <= 0 {
            current = options.maxWriters
        } else if let rate {
            let perWriter = rate / Double(max(current, 1))
            let needed = Double(remaining) / left
            current = min(
                max(Int((needed / max(perWriter, 0.001)).rounded(.up)), options.minWriters), options.maxWriters)
        }
        return current
    }

    /// When the pre-warm would end with every writer allowed, at the rate measured per writer.
    func predictedFinish(remaining: Int64) -> Date? {
        guard let rate, remaining > 0 else { return nil }
        let best = rate / Double(max(current, 1)) * Double(options.maxWriters)
        return Date().addingTimeInterval(Double(remaining) / max(best, 0.001))
    }
}

/// At most `rowsPerSecond` rows read by the pod's tasks together (0: no cap): a token bucket
/// of one second that starts empty, so no second reads more than the cap (a full bucket let
/// the first second read twice it).
actor RowRateLimiter {
    let rowsPerSecond: Int
    private var available: Double = 0
    private var refilled = ContinuousClock.now

    init(rowsPerSecond: Int) {
        self.rowsPerSecond = rowsPerSecond
    }

    /// Waits until `rows` may be read; throws `CancellationError` if cancelled meanwhile.
    func acquire(_ rows: Int) async throws {
        guard rowsPerSecond > 0 else { return }
        while true {
            let now = ContinuousClock.now
            available = min(Double(rowsPerSecond), available + (now - refilled).seconds * Double(rowsPerSecond))
            refilled = now
            if available >= Double(min(rows, rowsPerSecond)) {
                available -= Double(rows)
                return
            }
            let wait = (Double(min(rows, rowsPerSecond)) - available) / Double(rowsPerSecond)
            try await Task.sleep(for: .milliseconds(Int(wait * 1000) + 1))
        }
    }
}
