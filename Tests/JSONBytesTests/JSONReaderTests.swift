import Foundation
import JSONBytes
import Testing

@Suite("JSONReader: the hot paths' plain JSON, read in place")
struct JSONReaderTests {
    private func integer(_ text: String) -> Int64? {
        JSONReader.read(Array(text.utf8)) { reader in reader.integer().flatMap { reader.atEnd ? $0 : nil } }
    }

    private func string(_ text: String) -> String? {
        JSONReader.read(Array(text.utf8)) { reader in reader.string() }
    }

    @Test("integers to Int64.max; one past it, a leading zero, a fraction or an exponent are refused")
    func integers() {
        #expect(integer("0") == 0)
        #expect(integer("-42") == -42)
        #expect(integer(" 9223372036854775807 ") == Int64.max)
        #expect(integer("9223372036854775808") == nil, "past Int64.max: refused, never wrapped")
        #expect(integer("99999999999999999999") == nil)
        #expect(integer("007") == nil)
        #expect(integer("1.5") == nil)
        #expect(integer("1e3") == nil)
        #expect(integer("-") == nil)
        #expect(integer("") == nil)
    }

    @Test(
        "strings: read in place, their named escapes decoded; a \\u escape, a control character, bad UTF-8 or no end give nil"
    )
    func strings() {
        #expect(string(#""plain text""#) == "plain text")
        #expect(
            string(#""quote \" backslash \\ slash \/ line\nend\ttab""#)
                == "quote \" backslash \\ slash / line\nend\ttab")
        #expect(string(#""书店 café""#) == "书店 café")
        #expect(string(#""caf\u00e9 \u4e66""#) == "café 书")
        #expect(string(#""\ud83c\udf89""#) == "🎉", "a surrogate pair")
        #expect(string(#""\uD83C\uDF89""#) == "🎉", "hex digits of either case")
        #expect(string(#""\ud83c""#) == nil, "a lone high surrogate")
        #expect(string(#""\udf89""#) == nil, "a lone low surrogate")
        #expect(string(#""\u12""#) == nil)
        #expect(string(#""\x41""#) == nil)
        #expect(string("\"a\u{01}b\"") == nil)
        #expect(string("\"unterminated") == nil)
        #expect(JSONReader.read([0x22, 0xFF, 0xFE, 0x22]) { $0.string() } == nil)
    }

    @Test("an object member by member; anything after its end makes it unread")
    func objects() {
        var seen: [String: Int64] = [:]
        let read = JSONReader.read(Array(#" { "a" : 1 , "b":-2 } "#.utf8)) { reader in
            reader.object { reader, key in
                guard let name = reader.text(key), let value = reader.integer() else { return false }
                seen[name] = value
                return true
            }
        }
        #expect(read && seen == ["a": 1, "b": -2])
        #expect(JSONReader.read(Array("{}".utf8)) { $0.object { _, _ in false } })
        #expect(!JSONReader.read(Array(#"{"a":1} x"#.utf8)) { $0.object { reader, _ in reader.skipValue() } })
        #expect(!JSONReader.read(Array(#"{"a":1,}"#.utf8)) { $0.object { reader, _ in reader.skipValue() } })
        #expect(JSONReader.read(Array(#"{"a":{"b":1}}"#.utf8)) { $0.object { reader, _ in reader.skipValue() } })
    }

    @Test("arrays of integers, empty ones too; a trailing comma or a string in them is refused")
    func integerArrays() {
        #expect(JSONReader.read(Array("[1, 2, 9223372036854775807]".utf8)) { $0.integers() } == [1, 2, Int64.max])
        #expect(JSONReader.read(Array("[ ]".utf8)) { $0.integers() } == [])
        #expect(JSONReader.read(Array("[1,]".utf8)) { $0.integers() } == nil)
        #expect(JSONReader.read(Array(#"[1,"2"]"#.utf8)) { $0.integers() } == nil)
    }

    @Test("any value a caller does not use is skipped, nested ones too, within a depth")
    func skippedValues() {
        for text in [#"{"a": [1, -2.5e-3, "x\u00e9", {"b": null}], "c": {}}"#, "[]", "0", "-0.5", "1E+9"] {
            #expect(JSONReader.read(Array(text.utf8)) { $0.skipValue() && $0.atEnd }, "\(text)")
        }
        for text in ["[1,]", #"{"a"}"#, "1.", "-", "01", "1e", #"{"a": tru}"#] {
            #expect(!JSONReader.read(Array(text.utf8)) { $0.skipValue() && $0.atEnd }, "\(text)")
        }
        let deep = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect(!JSONReader.read(Array(deep.utf8)) { $0.skipValue() }, "past 64 levels: refused, not recursed")
    }
}
