import Foundation
import Synchronization

/// RFC 3339 times at microsecond precision (PostgreSQL's), exact both ways: a time parsed
/// and formatted again gives the same instant, so a replayed event's `entered_at` compares
/// equal to the stored one. Foundation's formatters truncate binary fractions (.123 can come
/// back as .122) and are slow to build, which matters at a million rows.
public enum RFC3339 {
    /// The zone of the times a person reads (alerts, logs, dead-letter reasons, the CLI):
    /// `PREWARM_TIMEZONE`, set once at start-up.
    public static var displayZone: TimeZone {
        get { zone.withLock { $0 } }
        set { zone.withLock { $0 = newValue } }
    }
    private static let zone = Mutex(TimeZone(identifier: "Asia/Shanghai") ?? .gmt)

    /// A time for a person: whole seconds with the display zone's offset,
    /// `2026-11-21T12:00:00+08:00` (one rule everywhere a person reads a time).
    public static func display(_ date: Date) -> String {
        let zone = displayZone
        let offset = zone.secondsFromGMT(for: date)
        let local = format(Date(timeIntervalSince1970: (date.timeIntervalSince1970 + Double(offset)).rounded(.down)))
        let sign = offset < 0 ? "-" : "+"
        let minutes = abs(offset) / 60
        return String(local.prefix(19)) + sign + String(format: "%02d:%02d", minutes / 60, minutes % 60)
    }

    /// `2026-11-21T04:00:00.123456Z`, always UTC, always six fraction digits.
    public static func format(_ date: Date) -> String {
        let micros = microseconds(since1970: date)
        var seconds = micros / 1_000_000
        var fraction = micros % 1_000_000
        if fraction < 0 {
            fraction += 1_000_000
            seconds -= 1
        }
        var days = seconds / 86_400
        var secondOfDay = seconds % 86_400
        if secondOfDay < 0 {
            secondOfDay += 86_400
            days -= 1
        }
        let (year, month, day) = civil(fromDays: days)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(27)
        func digits(_ value: Int64, _ count: Int) {
            var divisor: Int64 = 1
            for _ in 1..<count { divisor *= 10 }
            var rest = value
            while divisor > 0 {
                bytes.append(UInt8(48 + rest / divisor))
                rest %= divisor
                divisor /= 10
            }
        }
        digits(year, 4)
        bytes.append(45)
        digits(month, 2)
        bytes.append(45)
        digits(day, 2)
        bytes.append(84)
        digits(secondOfDay / 3600, 2)
        bytes.append(58)
        digits(secondOfDay / 60 % 60, 2)
        bytes.append(58)
        digits(secondOfDay % 60, 2)
        bytes.append(46)
        digits(fraction, 6)
        bytes.append(90)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The instant in whole microseconds since 1970 (rounded, as `format` writes it).
    public static func microseconds(since1970 date: Date) -> Int64 {
        Int64((date.timeIntervalSince1970 * 1_000_000).rounded())
    }

    /// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`; `t`/space for `T` and `z` for `Z` are
    /// accepted as RFC 3339 allows. Fractions beyond microseconds are rounded. Returns nil
    /// for anything else, including impossible dates (2026-02-30).
    public static func parse(_ text: String) -> Date? {
        var text = text
        return text.withUTF8 { parse(utf8: $0) }
    }

    /// `parse` of UTF-8 bytes, e.g. straight from a message.
    public static func parse(utf8 bytes: UnsafeBufferPointer<UInt8>) -> Date? {
        guard bytes.count <= 64 else { return nil }
        var index = 0
        func number(_ count: Int) -> Int64? {
            guard index + count <= bytes.count else { return nil }
            var value: Int64 = 0
            for _ in 0..<count {
                let byte = bytes[index]
                guard byte >= 48 && byte <= 57 else { return nil }
                value = value * 10 + Int64(byte - 48)
                index += 1
            }
            return value
        }
        func expect(_ allowed: UInt8, or other: UInt8? = nil, or third: UInt8? = nil) -> Bool {
            guard index < bytes.count, bytes[index] == allowed || bytes[index] == other || bytes[index] == third else {
                return false
            }
            index += 1
            return true
        }
        guard let year = number(4), expect(45), let month = number(2), expect(45), let day = number(2),
            expect(84, or: 116, or: 32), let hour = number(2), expect(58), let minute = number(2), expect(58),
            let second = number(2)
        else { return nil }
        guard (1...12).contains(month), day >= 1, day <= daysIn(month: month, year: year), hour < 24, minute < 60,
            second < 61
        else { return nil }
        var micros: Int64 = 0
        if index < bytes.count, bytes[index] == 46 {
            index += 1
            var scale: Int64 = 100_000
            var digitsRead = 0
            var roundUp = false
            while index < bytes.count, bytes[index] >= 48, bytes[index] <= 57 {
                let digit = Int64(bytes[index] - 48)
                if scale > 0 {
                    micros += digit * scale
                    scale /= 10
                } else if digitsRead == 6 {
                    roundUp = digit >= 5
                }
                digitsRead += 1
                index += 1
            }
            guard digitsRead > 0 else { return nil }
            if roundUp { micros += 1 }
        }
        var offset: Int64 = 0
        if expect(90, or: 122) {
            offset = 0
        } else if index < bytes.count, bytes[index] == 43 || bytes[index] == 45 {
            let sign: Int64 = bytes[index] == 45 ? -1 : 1
            index += 1
            guard let hours = number(2), expect(58), let minutes = number(2), hours < 24, minutes < 60 else {
                return nil
            }
            offset = sign * (hours * 3600 + minutes * 60)
        } else {
            return nil
        }
        guard index == bytes.count else { return nil }
        let seconds = days(fromCivil: year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset
        return Date(timeIntervalSince1970: Double(seconds * 1_000_000 + micros) / 1_000_000)
    }

    static func daysIn(month: Int64, year: Int64) -> Int64 {
        switch month {
        case 2: return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm);
    /// `civil(fromDays:)` is its inverse.
    static func days(fromCivil year: Int64, _ month: Int64, _ day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    public static func civil(fromDays days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}
