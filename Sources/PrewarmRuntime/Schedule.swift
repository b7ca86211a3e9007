import Foundation

/// When a job fires, in a configured time zone: daily at HH:MM or hourly at :MM.
public enum Schedule: Sendable, Equatable, CustomStringConvertible {
    case daily(hour: Int, minute: Int)
    case hourly(minute: Int)

    /// `daily@HH:MM` or `hourly@:MM`, as configuration writes it.
    public init(parsing text: String) throws(ScheduleError) {
        let parts = text.split(separator: "@", maxSplits: 1).map(String.init)
        guard parts.count == 2 else { throw ScheduleError(text) }
        let clock = parts[1].split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        switch parts[0] {
        case "daily":
            guard clock.count == 2, let hour = Int(clock[0]), let minute = Int(clock[1]), (0..<24).contains(hour),
                (0..<60).contains(minute)
            else { throw ScheduleError(text) }
            self = .daily(hour: hour, minute: minute)
        case "hourly":
            guard clock.count == 2, clock[0].isEmpty, let minute = Int(clock[1]), (0..<60).contains(minute) else {
                throw ScheduleError(text)
            }
            self = .hourly(minute: minute)
        default:
            throw ScheduleError(text)
        }
    }

    public var description: String {
        switch self {
        case .daily(let hour, let minute): return "daily@" + Self.twoDigits(hour) + ":" + Self.twoDigits(minute)
        case .hourly(let minute): return "hourly@:" + Self.twoDigits(minute)
        }
    }

    /// The first fire strictly after `date`. On a day that skips the time (a DST jump),
    /// the job fires at the first moment after the gap.
    public func nextFire(after date: Date, in timeZone: TimeZone) -> Date {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let wanted: DateComponents
        switch self {
        case .daily(let hour, let minute): wanted = DateComponents(hour: hour, minute: minute, second: 0)
        case .hourly(let minute): wanted = DateComponents(minute: minute, second: 0)
        }
        return calendar.nextDate(after: date, matching: wanted, matchingPolicy: .nextTime)!
    }

    /// The period a fire belongs to: `yyyyMMdd` for daily jobs, `yyyyMMddHH` for hourly ones.
    /// Job-run flags are keyed by it, so each period runs once.
    public func period(of fire: Date, in timeZone: TimeZone) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let parts = calendar.dateComponents([.year, .month, .day, .hour], from: fire)
        let day = String(parts.year!) + Self.twoDigits(parts.month!) + Self.twoDigits(parts.day!)
        switch self {
        case .daily: return day
        case .hourly: return day + Self.twoDigits(parts.hour!)
        }
    }

    /// How long a job-run flag must live to cover its period.
    public var period: Duration {
        switch self {
        case .daily: return .seconds(26 * 3600)  // a DST day can be 25 h long
        case .hourly: return .seconds(2 * 3600)
        }
    }

    private static func twoDigits(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
}

public struct ScheduleError: Error, CustomStringConvertible {
    public let text: String
    init(_ text: String) { self.text = text }
    public var description: String { "'\(text)' is not a schedule; write daily@HH:MM or hourly@:MM" }
}
