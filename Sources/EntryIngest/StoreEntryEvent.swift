import Foundation
import Kafka
import Postgres
import PrewarmRuntime

/// One `store.entry.v1` event: a user walked into a store.
public struct StoreEntryEvent: Sendable, Equatable {
    public let eventID: String
    public let userID: Int64
    public let storeID: Int64
    public let enteredAt: Date

    public init(eventID: String, userID: Int64, storeID: Int64, enteredAt: Date) {
        self.eventID = eventID
        self.userID = userID
        self.storeID = storeID
        self.enteredAt = enteredAt
    }
}

/// Decodes and validates `store.entry.v1`; every rejection is an `InvalidMessage` whose
/// class names the rule, for the DLQ header and the metrics.
public struct StoreEntryDecoder: Sendable {
    /// How far ahead of this worker's clock an `entered_at` may be (clock skew upstream).
    public var maximumFutureSkew: TimeInterval
    public var now: @Sendable () -> Date

    public init(maximumFutureSkew: TimeInterval = 600, now: @escaping @Sendable () -> Date = { Date() }) {
        self.maximumFutureSkew = maximumFutureSkew
        self.now = now
    }

    private struct Wire: Decodable {
        let eventID: String?
        let userID: Int64?
        let storeID: Int64?
        let enteredAt: String?

        enum CodingKeys: String, CodingKey {
            case eventID = "event_id"
            case userID = "user_id"
            case storeID = "store_id"
            case enteredAt = "entered_at"
        }
    }

    public func decode(_ message: KafkaMessage) throws -> StoreEntryEvent {
        let wire: Wire
        do {
            wire = try JSONDecoder().decode(Wire.self, from: Data(message.value))
        } catch {
            throw InvalidMessage("not a JSON object of store.entry.v1: \(error)", errorClass: "UndecodableJSON")
        }
        guard let eventID = wire.eventID else { throw missing("event_id") }
        guard let userID = wire.userID else { throw missing("user_id") }
        guard let storeID = wire.storeID else { throw missing("store_id") }
        guard let enteredText = wire.enteredAt else { throw missing("entered_at") }
        guard UUID(uuidString: eventID) != nil else {
            throw InvalidMessage("event_id '\(eventID)' is not a UUID", errorClass: "BadEventID")
        }
        guard userID > 0 else { throw InvalidMessage("user_id \(userID) is not positive", errorClass: "NonPositiveID") }
        guard storeID > 0 else {
            throw InvalidMessage("store_id \(storeID) is not positive", errorClass: "NonPositiveID")
        }
        guard let enteredAt = Self.parseTime(enteredText) else {
            throw InvalidMessage("entered_at '\(enteredText)' is not an RFC 3339 time", errorClass: "BadTimestamp")
        }
        guard enteredAt.timeIntervalSince(now()) <= maximumFutureSkew else {
            throw InvalidMessage("entered_at \(enteredText) is in the future", errorClass: "FutureTimestamp")
        }
        if let key = message.keyString, key != String(userID) {
            throw InvalidMessage("key '\(key)' is not the user id \(userID)", errorClass: "KeyMismatch")
        }
        return StoreEntryEvent(eventID: eventID.lowercased(), userID: userID, storeID: storeID, enteredAt: enteredAt)
    }

    private func missing(_ field: String) -> InvalidMessage {
        InvalidMessage("missing field \(field)", errorClass: "MissingField")
    }

    static func parseTime(_ text: String) -> Date? { RFC3339.parse(text) }
}
