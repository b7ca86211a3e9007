import Foundation
import Kafka
import Postgres
import PrewarmRuntime

/// A key-account live stream booked: `live.reservation.v1`'s value (topics.md).
public struct Reservation: Sendable, Codable, Equatable {
    public var reservationID: String
    public var liveID: Int64
    public var shopID: Int64
    public var startsAt: Date
    public var endsAt: Date
    /// Pre-warm again even if a task of the live ran or succeeded.
    public var force: Bool

    public init(
        reservationID: String, liveID: Int64, shopID: Int64, startsAt: Date, endsAt: Date, force: Bool = false
    ) {
        self.reservationID = reservationID
        self.liveID = liveID
        self.shopID = shopID
        self.startsAt = startsAt
        self.endsAt = endsAt
        self.force = force
    }

    enum CodingKeys: String, CodingKey {
        case reservationID = "reservation_id"
        case liveID = "live_id"
        case shopID = "shop_id"
        case startsAt = "starts_at"
        case endsAt = "ends_at"
        case force
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        reservationID = try container.decode(String.self, forKey: .reservationID)
        liveID = try container.decode(Int64.self, forKey: .liveID)
        shopID = try container.decode(Int64.self, forKey: .shopID)
        startsAt = try container.decode(Date.self, forKey: .startsAt)
        endsAt = try container.decode(Date.self, forKey: .endsAt)
        force = try container.decodeIfPresent(Bool.self, forKey: .force) ?? false
    }

    /// The message that carries it (key = shop id).
    public func message(topic: String) throws -> KafkaProducerMessage {
        KafkaProducerMessage(
            topic: topic, key: Array(String(shopID).utf8), value: [UInt8](try JSONEncoder.prewarm.encode(self)))
    }

    /// Decodes and checks what needs no database: fields present, ids positive, the end after
    /// the start and not past, the key the shop id.
    public static func decode(_ bytes: [UInt8], key: [UInt8]?, now: Date = Date()) throws -> Reservation {
        let reservation: Reservation
        do {
            reservation = try JSONDecoder.prewarm.decode(Reservation.self, from: Data(bytes))
        } catch let error as DecodingError {
            if case .keyNotFound(let field, _) = error {
                throw InvalidMessage("missing field \(field.stringValue)", errorClass: "MissingField")
            }
            throw InvalidMessage("not a reservation: \(error)", errorClass: "UndecodableJSON")
        }
        try reservation.validate(now: now)
        if let key, String(decoding: key, as: UTF8.self) != String(reservation.shopID) {
            throw InvalidMessage(
                "key '\(String(decoding: key, as: UTF8.self))' is not the shop id \(reservation.shopID)",
                errorClass: "KeyMismatch")
        }
        return reservation
    }

    public func validate(now: Date = Date()) throws {
        guard liveID > 0, shopID > 0 else {
            throw InvalidMessage("live_id and shop_id must be positive", errorClass: "NonPositiveID")
        }
        guard !reservationID.isEmpty else {
            throw InvalidMessage("reservation_id is empty", errorClass: "MissingField")
        }
        guard endsAt > startsAt else {
            throw InvalidMessage(
                "ends_at \(RFC3339.display(endsAt)) is not after starts_at \(RFC3339.display(startsAt))",
                errorClass: "EndNotAfterStart")
        }
        guard endsAt > now else {
            throw InvalidMessage("the stream ended at \(RFC3339.display(endsAt))", errorClass: "StreamEnded")
        }
    }
}
