import Foundation
import JSONBytes
import Kafka
import Postgres
import PrewarmRuntime

/// One `store.entry.v1` event: a user walked into a store.
public struct StoreEntryEvent: Sendable, Equatable {
    public let eventID: UUID
    public let userID: Int64
    public let storeID: Int64
    public let enteredAt: Date

    public init(eventID: UUID, userID: Int64, storeID: Int64, enteredAt: Date) {
        self.eventID = eventID
        self.userID = userID
        self.storeID = storeID
        self.enteredAt = enteredAt
    }

    /// The message as upstream writes it: key = user id, value the JSON of topics.md.
    public var message: (key: String, json: String) {
        (
            String(userID),
            #"{"event_id":"\#(eventID.lowercaseText)","user_id":\#(userID),"store_id":\#(storeID),"entered_at":"\#(RFC3339.format(enteredAt))"}"#
        )
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

    /// The event's fields as the JSON gives them, before the rules are checked.
    private struct Wire {
        var eventID: String?
        var userID: Int64?
        var storeID: Int64?
        var enteredAt: String?
        /// The UUID, parsed from the bytes (`eventID` is then only filled in when they are
        /// not a UUID, for the error).
        var eventUUID: UUID?
        /// The time, parsed from the bytes (`enteredAt` is then only filled in when they are
        /// not a time, for the error).
        var enteredAtTime: Date?

        /// Any JSON object of this schema, the only way an event is read: keys compared as
        /// bytes, the two strings it keeps parsed from their bytes without an intermediate
        /// `String` (unless they have escapes), fields it does not use skipped whatever their
        /// kind. Refused, with the first problem: not JSON, a field of the wrong kind (an id
        /// as a string or a fraction, out of the 64-bit range), a key given twice.
        init(reading bytes: [UInt8]) throws(JSONShapeError) {
            // The schema's keys are told apart as bytes (a bit each, for a repeat); only a
            // key it does not know is made a String, to be told from the others.
            var seenFields = 0
            var seenOthers = Set<String>()
            var problem: String?
            func once(_ field: Int, _ name: String) -> Bool {
                guard seenFields & field == 0 else {
                    problem = "the key \(name) is given twice"
                    return false
                }
                seenFields |= field
                return true
            }
            let read = JSONReader.read(bytes) {
                $0.object { reader, key in
                    if reader.matches(key, "event_id") {
                        guard once(1, "event_id") else { return false }
                        guard let field = reader.string(parsedBy: UUID.init(hexUTF8:)) else {
                            problem = "event_id is not a string"
                            return false
                        }
                        (self.eventUUID, self.eventID) = field
                    } else if reader.matches(key, "entered_at") {
                        guard once(2, "entered_at") else { return false }
                        guard let field = reader.string(parsedBy: RFC3339.parse(utf8:)) else {
                            problem = "entered_at is not a string"
                            return false
                        }
                        (self.enteredAtTime, self.enteredAt) = field
                    } else if reader.matches(key, "user_id") {
                        guard once(4, "user_id") else { return false }
                        self.userID = reader.integer()
                        if self.userID == nil { problem = "user_id is not a 64-bit integer" }
                    } else if reader.matches(key, "store_id") {
                        guard once(8, "store_id") else { return false }
                        self.storeID = reader.integer()
                        if self.storeID == nil { problem = "store_id is not a 64-bit integer" }
                    } else {
                        let name = reader.text(key) ?? "(not UTF-8)"
                        guard seenOthers.insert(name).inserted else {
                            problem = "the key \(name) is given twice"
                            return false
                        }
                        if !reader.skipValue() { problem = "the value of \(name) is not JSON" }
                    }
                    return problem == nil
                }
            }
            guard read else { throw JSONShapeError(problem ?? "not a JSON object") }
        }
    }

    public func decode(_ message: KafkaMessage) throws -> StoreEntryEvent {
        let wire: Wire
        do {
            wire = try Wire(reading: message.value)
        } catch {
            throw InvalidMessage("not a JSON object of store.entry.v1: \(error)", errorClass: "UndecodableJSON")
        }
        guard wire.eventUUID != nil || wire.eventID != nil else { throw missing("event_id") }
        guard let userID = wire.userID else { throw missing("user_id") }
        guard let storeID = wire.storeID else { throw missing("store_id") }
        guard wire.enteredAtTime != nil || wire.enteredAt != nil else { throw missing("entered_at") }
        guard let eventID = wire.eventUUID ?? wire.eventID.flatMap(UUID.init(hexText:)) else {
            throw InvalidMessage("event_id '\(wire.eventID ?? "")' is not a UUID", errorClass: "BadEventID")
        }
        guard userID > 0 else { throw InvalidMessage("user_id \(userID) is not positive", errorClass: "NonPositiveID") }
        guard storeID > 0 else {
            throw InvalidMessage("store_id \(storeID) is not positive", errorClass: "NonPositiveID")
        }
        guard let enteredAt = wire.enteredAtTime ?? wire.enteredAt.flatMap(RFC3339.parse) else {
            throw InvalidMessage(
                "entered_at '\(wire.enteredAt ?? "")' is not an RFC 3339 time", errorClass: "BadTimestamp")
        }
        guard enteredAt.timeIntervalSince(now()) <= maximumFutureSkew else {
            throw InvalidMessage(
                "entered_at \(wire.enteredAt ?? RFC3339.display(enteredAt)) is in the future",
                errorClass: "FutureTimestamp")
        }
        if let key = message.keyString, key != String(userID) {
            throw InvalidMessage("key '\(key)' is not the user id \(userID)", errorClass: "KeyMismatch")
        }
        return StoreEntryEvent(
            eventID: eventID, userID: userID, storeID: storeID,
            enteredAt: enteredAt)
    }

    private func missing(_ field: String) -> InvalidMessage {
        InvalidMessage("missing field \(field)", errorClass: "MissingField")
    }
}

extension JSONReader {
    /// A string read by `parse` straight from its bytes (from its text's bytes when it has
    /// escapes) or, when `parse` refuses them, as text (for the error); nil when it is not a
    /// string.
    mutating func string<Value>(
        parsedBy parse: (UnsafeBufferPointer<UInt8>) -> Value?
    ) -> (parsed: Value?, text: String?)? {
        let start = index
        if let range = stringRange() {
            if let value = parse(UnsafeBufferPointer(rebasing: bytes[range])) { return (value, nil) }
            guard let text = text(range) else { return nil }
            return (nil, text)
        }
        index = start
        guard let text = string() else { return nil }
        let parsed = Array(text.utf8).withUnsafeBufferPointer { parse($0) }
        return parsed.map { ($0, nil) } ?? (nil, text)
    }
}
