import Foundation
import Postgres

/// Calendar days in a time zone, as the activity keys and archive partitions name them:
/// `yyyymmdd` (and `yyyymm`), by arithmetic on the zone's offset at the instant (a
/// `Calendar` per event was a tenth of a batch's time).
public enum LocalDay {
    /// The `yyyymmdd` of `date` in `timeZone`.
    public static func text(_ date: Date, in timeZone: TimeZone) -> String {
        var numbers = Numbers(timeZone)
        return text(ofDay: numbers.day(of: date))
    }

    /// The `yyyymmdd` of a day number (days since 1970-01-01, as `Numbers` counts them).
    public static func text(ofDay number: Int64) -> String {
        let (year, month, day) = RFC3339.civil(fromDays: number)
        return format(Int(year), Int(month), Int(day))
    }

    /// Day numbers of many instants in one zone: the zone's offset is looked up once per
    /// hour of UTC the instants fall in (exact: an hour whose offset changes inside it is
    /// looked up per instant).
    public struct Numbers {
        public let timeZone: TimeZone
        private var offsets: [Int64: Int?] = [:]

        public init(_ timeZone: TimeZone) { self.timeZone = timeZone }

        /// Days since 1970-01-01 of the instant's calendar day in the zone.
        public mutating func day(of date: Date) -> Int64 {
            let seconds = date.timeIntervalSince1970
            let hour = Int64((seconds / 3600).rounded(.down))
            let offset: Int
            if let cached = offsets[hour] {
                offset = cached ?? timeZone.secondsFromGMT(for: date)
            } else {
                let start = Date(timeIntervalSince1970: Double(hour) * 3600)
                let first = timeZone.secondsFromGMT(for: start)
                let constant = first == timeZone.secondsFromGMT(for: start.addingTimeInterval(3599))
                offsets[hour] = constant ? first : Optional<Int>.none
                offset = constant ? first : timeZone.secondsFromGMT(for: date)
            }
            return Int64(((seconds + Double(offset)) / 86_400).rounded(.down))
        }
    }

    /// The `yyyymm` of `date` in `timeZone`.
    public static func month(_ date: Date, in timeZone: TimeZone) -> String {
        String(text(date, in: timeZone).prefix(6))
    }

    /// `yyyymmdd`.
    public static func format(_ year: Int, _ month: Int, _ day: Int) -> String {
        String(year) + (month < 10 ? "0" : "") + String(month) + (day < 10 ? "0" : "") + String(day)
    }
}
