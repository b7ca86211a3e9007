import Foundation
import KAPrewarm
import PrewarmRuntime
import Testing

@Suite("live.reservation.v1 values")
struct ReservationTests {
    let now = ISO8601DateFormatter().date(from: "2026-12-01T12:00:00Z")!

    private func decode(_ json: String, key: String? = "9001") throws -> Reservation {
        try Reservation.decode(Array(json.utf8), key: key.map { Array($0.utf8) }, now: now)
    }

    private func refusal(_ json: String, key: String? = "9001") -> String? {
        do {
            _ = try decode(json, key: key)
            return nil
        } catch let invalid as InvalidMessage {
            return invalid.errorClass
        } catch {
            return "\(error)"
        }
    }

    @Test("a valid reservation decodes, force defaulting to false")
    func valid() throws {
        let reservation = try decode(
            """
            {"reservation_id": "r-1", "live_id": 77, "shop_id": 9001,
             "starts_at": "2026-12-01T20:00:00+08:00", "ends_at": "2026-12-01T22:00:00+08:00"}
            """)
        #expect(reservation.liveID == 77 && reservation.shopID == 9001 && reservation.reservationID == "r-1")
        #expect(reservation.startsAt == ISO8601DateFormatter().date(from: "2026-12-01T12:00:00Z"))
        #expect(reservation.endsAt.timeIntervalSince(reservation.startsAt) == 7200)
        #expect(!reservation.force)
    }

    @Test("each kind of bad reservation is refused with its own reason")
    func refusals() {
        let times = "\"starts_at\": \"2026-12-01T20:00:00+08:00\", \"ends_at\": \"2026-12-01T22:00:00+08:00\""
        #expect(refusal("{\"reservation_id\": \"r\", \"shop_id\": 9001, \(times)}") == "MissingField")
        #expect(refusal("not json") == "UndecodableJSON")
        #expect(
            refusal("{\"reservation_id\": \"r\", \"live_id\": \"x\", \"shop_id\": 9001, \(times)}") == "UndecodableJSON"
        )
        #expect(refusal("{\"reservation_id\": \"r\", \"live_id\": 0, \"shop_id\": 9001, \(times)}") == "NonPositiveID")
        #expect(refusal("{\"reservation_id\": \"\", \"live_id\": 7, \"shop_id\": 9001, \(times)}") == "MissingField")
        #expect(
            refusal(
                """
                {"reservation_id": "r", "live_id": 7, "shop_id": 9001,
                 "starts_at": "2026-12-01T20:00:00+08:00", "ends_at": "2026-12-01T20:00:00+08:00"}
                """) == "EndNotAfterStart")
        #expect(
            refusal(
                """
                {"reservation_id": "r", "live_id": 7, "shop_id": 9001,
                 "starts_at": "2026-12-01T08:00:00+08:00", "ends_at": "2026-12-01T10:00:00+08:00"}
                """) == "StreamEnded")
        #expect(
            refusal("{\"reservation_id\": \"r\", \"live_id\": 7, \"shop_id\": 9001, \(times)}", key: "9002")
                == "KeyMismatch")
    }

    @Test("a reservation's message is keyed by its shop and decodes back to itself")
    func roundTrip() throws {
        let reservation = Reservation(
            reservationID: "r-9", liveID: 9, shopID: 42, startsAt: now.addingTimeInterval(60),
            endsAt: now.addingTimeInterval(3600), force: true)
        let message = try reservation.message(topic: "live.reservation.v1")
        #expect(message.key == Array("42".utf8))
        #expect(try Reservation.decode(message.value, key: message.key, now: now) == reservation)
    }
}
