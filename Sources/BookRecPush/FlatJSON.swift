import Foundation

/// The JSON of the downstream answers and the push message on the hot path, without
/// Foundation's generic coders (about a tenth of push-producer's CPU went to them): flat
/// objects of string values are read here; anything else falls back to `JSONDecoder`.
enum FlatJSON {
    /// A JSON object whose values are all strings (escapes other than `\u` allowed), as a
    /// dictionary; nil for anything else.
    static func strings(_ bytes: [UInt8]) -> [String: String]? {
        var index = 0
        func skipSpace() {
            while index < bytes.count, isSpace(bytes[index]) { index += 1 }
        }
        func expect(_ byte: UInt8) -> Bool {
            skipSpace()
            guard index < bytes.count, bytes[index] == byte else { return false }
            index += 1
            return true
        }
        func string() -> String? {
            guard expect(UInt8(ascii: "\"")) else { return nil }
            // The usual string has no escape: read in place, no copy of its bytes.
            let start = index
            while index < bytes.count, bytes[index] != UInt8(ascii: "\""), bytes[index] != UInt8(ascii: "\\"),
                bytes[index] >= 0x20
            {
                index += 1
            }
            if index < bytes.count, bytes[index] == UInt8(ascii: "\"") {
                index += 1
                return String(decoding: bytes[start..<index - 1], as: UTF8.self)
            }
            var scalars = Array(bytes[start..<index])
            while index < bytes.count {
                let byte = bytes[index]
                index += 1
                switch byte {
                case UInt8(ascii: "\""): return String(decoding: scalars, as: UTF8.self)
                case UInt8(ascii: "\\"):
                    guard index < bytes.count else { return nil }
                    let escape = bytes[index]
                    index += 1
                    switch escape {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): scalars.append(escape)
                    case UInt8(ascii: "n"): scalars.append(0x0A)
                    case UInt8(ascii: "r"): scalars.append(0x0D)
                    case UInt8(ascii: "t"): scalars.append(0x09)
                    case UInt8(ascii: "b"): scalars.append(0x08)
                    case UInt8(ascii: "f"): scalars.append(0x0C)
                    default: return nil  // \u: the generic decoder's job
                    }
                case 0..<0x20: return nil
                default: scalars.append(byte)
                }
            }
            return nil
        }
        guard expect(UInt8(ascii: "{")) else { return nil }
        var object: [String: String] = [:]
        if expect(UInt8(ascii: "}")) { return index == bytes.count || onlySpace(bytes[index...]) ? object : nil }
        while true {
            guard let key = string(), expect(UInt8(ascii: ":")), let value = string() else { return nil }
            object[key] = value
            if expect(UInt8(ascii: ",")) { continue }
            guard expect(UInt8(ascii: "}")) else { return nil }
            return onlySpace(bytes[index...]) ? object : nil
        }
    }

    private static func onlySpace(_ bytes: ArraySlice<UInt8>) -> Bool {
        bytes.allSatisfy(isSpace)
    }

    private static func isSpace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09
    }

    /// A JSON document built byte by byte: literal pieces and escaped strings.
    struct Writer {
        private(set) var bytes: [UInt8] = []

        init(capacity: Int) {
            bytes.reserveCapacity(capacity)
        }

        /// JSON text as it is (the caller's literal keys and punctuation, or a document).
        mutating func raw(_ text: some StringProtocol) {
            bytes += text.utf8
        }

        /// `text` as a quoted, escaped JSON string.
        mutating func string(_ text: some StringProtocol) {
            bytes.append(UInt8(ascii: "\""))
            for byte in text.utf8 {
                switch byte {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"): bytes += [UInt8(ascii: "\\"), byte]
                case 0..<0x20:
                    let hex = Array("0123456789abcdef".utf8)
                    bytes += Array("\\u00".utf8) + [hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]]
                default: bytes.append(byte)
                }
            }
            bytes.append(UInt8(ascii: "\""))
        }

        /// A flat object of string values, its keys in the order given.
        static func object(_ members: KeyValuePairs<String, String>) -> [UInt8] {
            var writer = Writer(capacity: members.reduce(2) { $0 + $1.key.utf8.count + $1.value.utf8.count + 6 })
            writer.raw("{")
            for (index, member) in members.enumerated() {
                if index > 0 { writer.raw(",") }
                writer.string(member.key)
                writer.raw(":")
                writer.string(member.value)
            }
            writer.raw("}")
            return writer.bytes
        }
    }

    /// `text` as a JSON string's content (escaped as `Writer.string` does, without quotes).
    static func escaped(_ text: some StringProtocol) -> String {
        var writer = Writer(capacity: text.utf8.count + 2)
        writer.string(text)
        return String(decoding: writer.bytes.dropFirst().dropLast(), as: UTF8.self)
    }
}

/// An answer that can be read from a flat object of strings.
protocol FlatDecodable: Decodable {
    init?(flat: [String: String])
}

extension FlatJSON {
    /// `bytes` as a `T`: read as a flat object, or by `JSONDecoder` when it is not one (an
    /// escape or a nested value); nil if neither reads it.
    static func decode<T: FlatDecodable>(_ type: T.Type, _ bytes: [UInt8]) -> T? {
        if let flat = strings(bytes), let value = T(flat: flat) { return value }
        return try? JSONDecoder().decode(T.self, from: Data(bytes))
    }
}
