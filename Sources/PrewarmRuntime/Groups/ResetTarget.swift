import Foundation
import Kafka

/// Where `prewarmctl offsets reset` moves a group.
public enum ResetTarget: Sendable, Equatable, CustomStringConvertible {
    case earliest
    case latest
    /// The first message at or after this time, per partition.
    case time(Date)
    /// The same offset on every partition, kept within what the partition still holds.
    case offset(Int64)

    /// `earliest`, `latest`, an RFC 3339 time (`2026-11-21T00:00:00+08:00`) or an offset.
    public init(parsing text: String) throws {
        switch text {
        case "earliest": self = .earliest
        case "latest": self = .latest
        default:
            if let offset = Int64(text), offset >= 0 {
                self = .offset(offset)
            } else if let date = ISO8601DateFormatter().date(from: text) {
                self = .time(date)
            } else {
                throw UsageError(
                    "'\(text)' is not a reset target: use earliest, latest, an RFC 3339 time or an offset")
            }
        }
    }

    public var description: String {
        switch self {
        case .earliest: return "earliest"
        case .latest: return "latest"
        case .time(let date): return ISO8601DateFormatter().string(from: date)
        case .offset(let offset): return String(offset)
        }
    }
}

/// The group has members other than the resetting one: its workers are still running.
public struct GroupHasActiveMembers: Error, CustomStringConvertible {
    public let group: String
    public let assigned: Int
    public let partitions: Int
    public var description: String {
        "group \(group) has other active members (this reset was given \(assigned) of \(partitions) partitions): "
            + "stop its workers (scale them to 0) and run the reset again"
    }
}
