import Foundation
import PrewarmConfiguration

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
        return calendar.nextDate(after: date, matching: wanted, matchingPolicy: .nextTime)!
    }

    /// The latest fire at or before `date`: the period a pod starting now would catch up.
    public func latestFire(notAfter date: Date, in timeZone: TimeZone) -> Date {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        return calendar.nextDate(
            after: date.addingTimeInterval(0.001), matching: wanted, matchingPolicy: .nextTime, direction: .backward)!
    }

    /// When the job fires in `period` (`yyyyMMdd` for daily jobs, `yyyyMMddHH` for hourly
    /// ones); nil if `period` is not one of its periods.
    public func fire(inPeriod period: String, in timeZone: TimeZone) -> Date? {
        let digits = period.compactMap(\.wholeNumberValue)
        let length: Int
        switch self {
        case .daily: length = 8
        case .hourly: length = 10
        }
        guard period.count == length, digits.count == length else { return nil }
        func number(_ range: Range<Int>) -> Int { digits[range].reduce(0) { $0 * 10 + $1 } }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        var parts = DateComponents(year: number(0..<4), month: number(4..<6), day: number(6..<8))
        switch self {
        case .daily(let hour, let minute):
            parts.hour = hour
            parts.minute = minute
        case .hourly(let minute):
            parts.hour = number(8..<10)
            parts.minute = minute
        }
        guard parts.isValidDate(in: calendar), let date = calendar.date(from: parts),
            self.period(of: date, in: timeZone) == period
        else { return nil }
        return date
    }

    private var wanted: DateComponents {
        switch self {
        case .daily(let hour, let minute): return DateComponents(hour: hour, minute: minute, second: 0)
        case .hourly(let minute): return DateComponents(minute: minute, second: 0)
        }
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

    private static func twoDigits(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
}

public struct ScheduleError: Error, Sendable, CustomStringConvertible {
    public let text: String
    init(_ text: String) { self.text = text }
    public var description: String { "'\(text)' is not a schedule; write daily@HH:MM or hourly@:MM" }
}
