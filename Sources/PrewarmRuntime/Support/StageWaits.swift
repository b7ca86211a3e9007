import CoreMetrics
import Foundation

/// Where a pipeline waits: the time its driving loop spent blocked on each stage (the reader
/// it needs the next rows from, the writers it needs a free slot of, the next poll), as
/// `<label>{stage}` seconds counters, and summed for the one run that owns the value. A stage
/// that is never waited on is one the pipeline overlaps fully; one waited on most of the run
/// is its bottleneck.
public struct StageWaits: Sendable {
    private let counters: [String: FloatingPointCounter]
    /// This run's waits, by stage, in seconds.
    public private(set) var seconds: [String: Double] = [:]

    public init(
        label: String, stages: [String], dimensions: [(String, String)] = [], factory: any MetricsFactory
    ) {
        var counters: [String: FloatingPointCounter] = [:]
        for stage in stages {
            counters[stage] = FloatingPointCounter(
                label: label, dimensions: dimensions + [("stage", stage)], factory: factory)
            counters[stage]?.increment(by: 0)
        }
        self.counters = counters
    }

    /// Adds the time since `start` to `stage`.
    public mutating func waited(_ stage: String, since start: ContinuousClock.Instant) {
        seconds[stage, default: 0] += record(stage, since: start)
    }

    /// Adds the time since `start` to `stage`'s counter only (callers running at once share
    /// one value); returns it in seconds.
    @discardableResult
    public func record(_ stage: String, since start: ContinuousClock.Instant) -> Double {
        let elapsed = (ContinuousClock.now - start).seconds
        counters[stage]?.increment(by: elapsed)
        return elapsed
    }

    /// "read 1.20 s, write 8.10 s" in the stages' order.
    public func summary(_ stages: [String]) -> String {
        stages.map { "\($0) \(String(format: "%.2f", seconds[$0] ?? 0)) s" }.joined(separator: ", ")
    }
}
