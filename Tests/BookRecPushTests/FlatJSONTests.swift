import Foundation
import Testing

@testable import BookRecPush

@Suite("Flat JSON of the downstream answers and the push message")
struct FlatJSONTests {
    @Test("a flat object of strings is read with its escapes; anything else is left to the generic decoder")
    func strings() {
        let answer = #" { "rec_id" : "r-1", "rec_type":"book","material_id":"m\"7\\x\/y\n"} "#
        #expect(
            FlatJSON.strings(Array(answer.utf8)) == ["rec_id": "r-1", "rec_type": "book", "material_id": "m\"7\\x/y\n"])
        #expect(FlatJSON.strings(Array("{}".utf8)) == [:])
        for other in [
            #"{"rec_id": 1}"#, #"{"a": {"b": "c"}}"#, #"{"a": "\u00e9"}"#, #"{"a": "b"} trailing"#, #"["a"]"#,
            #"{"a": "b",}"#, #"{"a": "b""#, "",
        ] {
            #expect(FlatJSON.strings(Array(other.utf8)) == nil, "\(other)")
        }
        let material = try? JSONDecoder().decode(
            Material.self, from: Data(#"{"material_id":"m","title":"caf\u00e9","body":"b","image_url":"u"}"#.utf8))
        #expect(material?.title == "café", "the fallback reads what the fast path does not")
    }

    @Test("escaped text is valid JSON and reads back the same")
    func escaping() throws {
        let text = "quote \" backslash \\ newline \n tab \t bell \u{07} café"
        let json = "{\"v\":\"" + FlatJSON.escaped(text) + "\"}"
        let back = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: String]
        #expect(back?["v"] == text)
    }
}
