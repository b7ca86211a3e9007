import Foundation
import JSONBytes
import Testing

@testable import BookRecPush

@Suite("Flat JSON of the downstream answers and the push message")
struct FlatJSONTests {
    @Test("an object's string members are read with every escape; other members skipped; anything else is nil")
    func strings() {
        let answer = #" { "rec_id" : "r-1", "rec_type":"book","material_id":"m\"7\\x\/y\n"} "#
        #expect(
            FlatJSON.strings(Array(answer.utf8)) == ["rec_id": "r-1", "rec_type": "book", "material_id": "m\"7\\x/y\n"])
        #expect(FlatJSON.strings(Array("{}".utf8)) == [:])
        #expect(FlatJSON.strings(Array(#"{"a": "caf\u00e9 \ud83c\udf89"}"#.utf8)) == ["a": "café 🎉"])
        let extra = #"{"n": -1.5e3, "o": {"p": [1, "q", null, {"r": true}]}, "a": "b", "t": false}"#
        #expect(FlatJSON.strings(Array(extra.utf8)) == ["a": "b"])
        for other in [
            #"{"a": "\ud83c"}"#, #"{"a": "\u00zz"}"#, #"{"a": "b"} trailing"#, #"["a"]"#, #"{"a": "b",}"#,
            #"{"a": "b""#, #"{"a": 01}"#, #"{"a": [1,]}"#, "",
        ] {
            #expect(FlatJSON.strings(Array(other.utf8)) == nil, "\(other)")
        }
    }

    @Test("the answers decode one way, to what JSONDecoder makes of them, escapes and extra members included")
    func answersAsJSONDecoder() throws {
        let materials = [
            #"{"material_id":"m","title":"caf\u00e9","body":"b","image_url":"u"}"#,
            #"{"material_id":"m-\"1\"","title":"t","body":"line\nline","image_url":"u","score":0.75,"tags":["x"]}"#,
        ]
        for text in materials {
            let expected = try JSONDecoder().decode(Material.self, from: Data(text.utf8))
            #expect(FlatJSON.decode(Material.self, Array(text.utf8)) == expected, "\(text)")
        }
        let missing = #"{"material_id":"m","title":"t","body":"b"}"#
        #expect(FlatJSON.decode(Material.self, Array(missing.utf8)) == nil)
        #expect((try? JSONDecoder().decode(Material.self, from: Data(missing.utf8))) == nil)
        let numeric = #"{"experiment":"e","value":1,"trace_id":"t"}"#
        #expect(FlatJSON.decode(Assignment.self, Array(numeric.utf8)) == nil, "a number is not the string asked for")
        #expect((try? JSONDecoder().decode(Assignment.self, from: Data(numeric.utf8))) == nil)
    }

    @Test("escaped text is valid JSON and reads back the same")
    func escaping() throws {
        let text = "quote \" backslash \\ newline \n tab \t bell \u{07} café"
        let json = "{\"v\":\"" + JSONWriter.escaped(text) + "\"}"
        let back = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: String]
        #expect(back?["v"] == text)
    }
}
