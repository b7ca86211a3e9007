import Foundation
import Postgres
import TestSupport
import Testing

@Suite("RFC 3339 times, exact to the microsecond")
struct RFC3339Tests {
    @Test("parse then format gives back the same instant, and PostgreSQL reads it as the same timestamptz")
    func roundTrip() async throws {
        let texts = [
            "2026-11-21T04:00:00Z", "2026-11-21T04:00:00.123Z", "2026-11-21T12:00:00.123456+08:00",
            "1999-12-31T23:59:59.999999-05:30", "2024-02-29t00:00:00.5z", "2026-03-29 01:30:00+00:00",
        ]
        let utc = [
            "2026-11-21T04:00:00.000000Z", "2026-11-21T04:00:00.123000Z", "2026-11-21T04:00:00.123456Z",
            "2000-01-01T05:29:59.999999Z", "2024-02-29T00:00:00.500000Z", "2026-03-29T01:30:00.000000Z",
        ]
        #expect(texts.map { RFC3339.parse($0).map(RFC3339.format) } == utc)
        for _ in 0..<10_000 {
            let micros = Int64.random(in: 0...4_102_444_800_000_000)  // up to 2100
            let date = Date(timeIntervalSince1970: Double(micros) / 1_000_000)
            let text = RFC3339.format(date)
            #expect(RFC3339.parse(text).map(RFC3339.format) == text)
        }
        let db = try await PostgresConnection.connect(try TestEnvironment.postgres())
        for (text, formatted) in zip(texts, utc) {
            let same = try await db.query(
                "SELECT $1::timestamptz = $2::timestamptz", [text, RFC3339.parse(text)!]
            ).first?[0].bool
            #expect(same == true, "\(text) vs \(formatted)")
        }
        await db.close()
    }

    @Test("the same instants as Foundation's ISO 8601 parser; malformed and impossible times are refused")
    func agreesWithFoundation() {
        let foundation = ISO8601DateFormatter()
        for text in ["2026-11-21T04:00:00Z", "2026-01-01T00:00:00+14:00", "1970-01-01T00:00:00-12:00"] {
            #expect(RFC3339.parse(text) == foundation.date(from: text))
        }
        for bad in [
            "", "2026-11-21", "2026-11-21T04:00:00", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z",
            "2026-11-21T24:00:00Z", "2026-11-21T04:00:00.Z", "2026-11-21T04:00:00Zjunk", "２０２６-11-21T04:00:00Z",
            "2026-11-21T04:00:00+0800",
        ] {
            #expect(RFC3339.parse(bad) == nil, "\(bad)")
        }
    }

    @Test("a time for a person carries PREWARM_TIMEZONE's offset, and parses back to the same instant")
    func display() {
        let instant = RFC3339.parse("2026-11-21T04:00:00.9Z")!
        let saved = RFC3339.displayZone
        defer { RFC3339.displayZone = saved }
        RFC3339.displayZone = TimeZone(identifier: "Asia/Shanghai")!
        #expect(RFC3339.display(instant) == "2026-11-21T12:00:00+08:00")
        RFC3339.displayZone = TimeZone(identifier: "America/St_Johns")!
        #expect(RFC3339.display(instant) == "2026-11-21T00:30:00-03:30")
        #expect(RFC3339.parse(RFC3339.display(instant)) == RFC3339.parse("2026-11-21T04:00:00Z"))
    }
}
