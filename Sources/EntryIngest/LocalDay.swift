import Foundation
import Postgres

/// Calendar days in a time zone, as the activity keys and archive partitions name them:
/// `yyyymmdd` (and `yyyymm`), by arithmetic on the zone's offset at the instant (a
/// `Calendar` per event was a tenth of a batch's time).
public enum LocalDay {
    /// The `yyyymmdd` of `date` in `timeZone`.
    public static func text(_ date: Date, in timeZone: TimeZone) -> String {
        let local = date.timeIntervalSince1970 + Double(timeZone.secondsFromGMT(for: date))
        let (year, month, day) = RFC3339.civil(fromDays: Int64((local / 86_400).rounded(.down)))
        return format(Int(year), Int(month), Int(day))
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
