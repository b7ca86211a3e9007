import EntryIngest
import Foundation
import Kafka
import PrewarmRuntime
import Testing

@Suite("store.entry.v1 decoding")
struct StoreEntryDecoderTests {
    let decoder = StoreEntryDecoder(now: { Date(timeIntervalSince1970: 1_795_190_400) })  // 2026-11-21T00:00+08:00

    func message(_ json: String, key: String? = "37") -> KafkaMessage {
        KafkaMessage(
            topic: "store.entry.v1", partition: 0, offset: 0, key: key.map { Array($0.utf8) }, value: Array(json.utf8))
    }

    @Test("a valid event decodes, its time read with its offset")
    func valid() throws {
        let event = try decoder.decode(
            message(
                #"{"event_id":"6F1C2A3E-0000-4000-8000-000000000001","user_id":37,"store_id":9,"entered_at":"2026-11-20T12:30:00+08:00"}"#
            ))
        #expect(event.eventID == UUID(uuidString: "6f1c2a3e-0000-4000-8000-000000000001"))
        #expect(event.eventID.lowercaseText == "6f1c2a3e-0000-4000-8000-000000000001")
        #expect(event.userID == 37 && event.storeID == 9)
        #expect(event.enteredAt == Date(timeIntervalSince1970: 1_795_190_400 - 11.5 * 3600))
    }

    @Test("each kind of bad input is rejected with a class naming the rule")
    func rejections() {
        let good = #""event_id":"6f1c2a3e-0000-4000-8000-000000000001""#
        let cases: [(String, String?, String)] = [
            ("not json", "37", "UndecodableJSON"),
            (#"{\#(good),"store_id":9,"entered_at":"2026-11-20T12:30:00+08:00"}"#, "37", "MissingField"),
            (
                #"{\#(good),"user_id":-37,"store_id":9,"entered_at":"2026-11-20T12:30:00+08:00"}"#, "-37",
                "NonPositiveID"
            ),
            (#"{\#(good),"user_id":37,"store_id":0,"entered_at":"2026-11-20T12:30:00+08:00"}"#, "37", "NonPositiveID"),
            (
                #"{"event_id":"e-1","user_id":37,"store_id":9,"entered_at":"2026-11-20T12:30:00+08:00"}"#, "37",
                "BadEventID"
            ),
            (
                #"{"event_id":"6f1c2a3e-0000-4000-8000-00000000000g","user_id":37,"store_id":9,"entered_at":"2026-11-20T12:30:00+08:00"}"#,
                "37", "BadEventID"
            ),
            (
                #"{"event_id":"6f1c2a3e00000-4000-8000-000000000001","user_id":37,"store_id":9,"entered_at":"2026-11-20T12:30:00+08:00"}"#,
                "37", "BadEventID"
            ),
            (#"{\#(good),"user_id":37,"store_id":9,"entered_at":"yesterday"}"#, "37", "BadTimestamp"),
            (
                #"{\#(good),"user_id":37,"store_id":9,"entered_at":"2027-01-01T00:00:00+08:00"}"#, "37",
                "FutureTimestamp"
            ),
            (#"{\#(good),"user_id":37,"store_id":9,"entered_at":"2026-11-20T12:30:00+08:00"}"#, "38", "KeyMismatch"),
        ]
        for (json, key, errorClass) in cases {
            let error = #expect(throws: InvalidMessage.self, "\(json)") { try decoder.decode(message(json, key: key)) }
            #expect(error?.errorClass == errorClass, "\(json)")
        }
    }

    @Test("unusual but valid JSON decodes the same as plain JSON; malformed JSON is refused either way")
    func fastPathAgreesWithFullParser() throws {
        let id = "6f1c2a3e-0000-4000-8000-000000000001"
        let time = "2026-11-20T12:30:00+08:00"
        let plain = try decoder.decode(
            message(#"{"event_id":"\#(id)","user_id":37,"store_id":9,"entered_at":"\#(time)"}"#))
        let unusual = [
            // whitespace and another field order
            "{ \"store_id\" : 9 ,\n\t\"entered_at\":\"\(time)\", \"user_id\":37, \"event_id\": \"\(id)\" }",
            // fields this schema does not use, nested or not
            #"{"event_id":"\#(id)","user_id":37,"store_id":9,"entered_at":"\#(time)","app":{"v":[1,2]},"ok":true,"n":null}"#,
            // an escaped character in a string
            #"{"event_id":"6f1c2a3e-0000-4000-8000-00000000000\u0031","user_id":37,"store_id":9,"entered_at":"\#(time)"}"#,
        ]
        for json in unusual {
            #expect(try decoder.decode(message(json)) == plain, "\(json)")
        }
        let malformed = [
            #"{"event_id":"\#(id)","user_id":"37","store_id":9,"entered_at":"\#(time)"}"#,  // id as a string
            #"{"event_id":"\#(id)","user_id":037,"store_id":9,"entered_at":"\#(time)"}"#,  // leading zero
            #"{"event_id":"\#(id)","user_id":37,"store_id":9,"entered_at":"\#(time)"} x"#,  // trailing text
            #"{"event_id":"\#(id)","user_id":37,"store_id":9,"entered_at":"\#(time)""#,  // unclosed
            #"{"event_id":"\#(id)","user_id":99999999999999999999,"store_id":9,"entered_at":"\#(time)"}"#,
            #"["event_id"]"#,
        ]
        for json in malformed {
            let error = #expect(throws: InvalidMessage.self, "\(json)") { try decoder.decode(message(json)) }
            #expect(error?.errorClass == "UndecodableJSON", "\(json)")
        }
    }
}
