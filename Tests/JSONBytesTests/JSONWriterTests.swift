import Foundation
import JSONBytes
import Testing

@Suite("JSONWriter: strings and integers as JSONEncoder writes them")
struct JSONWriterTests {
    private func written(_ text: String) -> String {
        var out: [UInt8] = []
        JSONWriter.string(text, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    @Test("strings escaped byte for byte as JSONEncoder (slashes as they are) escapes them, and read back the same")
    func strings() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .withoutEscapingSlashes
        let samples = [
            "", "plain", "quote \" backslash \\ slash /", "lines\n\r\t and \u{08}\u{0C}", "control \u{01}\u{1F}",
            "书店 café 🎉", String(repeating: "long run of plain bytes ", count: 200) + "\"",
        ]
        for text in samples {
            let ours = written(text)
            #expect(ours == String(decoding: try encoder.encode(text), as: UTF8.self), "\(text.prefix(30))")
            #expect(try JSONDecoder().decode(String.self, from: Data(ours.utf8)) == text)
        }
        var substring: [UInt8] = []
        JSONWriter.string("a\"b"[...], into: &substring)
        #expect(String(decoding: substring, as: UTF8.self) == #""a\"b""#)
    }

    @Test("a string's content alone, without quotes")
    func escapedContent() {
        #expect(JSONWriter.escaped(#"say "hi"\"#) == #"say \"hi\"\\"#)
        #expect(JSONWriter.escaped("") == "")
    }

    @Test("integers at the extremes of Int64")
    func integers() {
        for value in [Int64.min, -1, 0, 7, Int64.max] {
            var out: [UInt8] = []
            JSONWriter.integer(value, into: &out)
            #expect(String(decoding: out, as: UTF8.self) == String(value))
        }
    }
}
