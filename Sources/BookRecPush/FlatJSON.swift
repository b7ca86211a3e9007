import Foundation
import JSONBytes
import PrewarmRuntime

/// The JSON of the downstream answers and the push message on the hot path, without
/// Foundation's generic coders (about a tenth of push-producer's CPU went to them): flat
/// objects of string values are read here; anything else falls back to `JSONDecoder`.
enum FlatJSON {
    /// A JSON object whose values are all strings (escapes other than `\u` allowed), as a
    /// dictionary; nil for anything else.
    static func strings(_ bytes: [UInt8]) -> [String: String]? {
        var object: [String: String] = [:]
        let read = JSONReader.read(bytes) { reader in
            reader.object { reader, key in
                guard let key = reader.text(key), let value = reader.string() else { return false }
                object[key] = value
                return true
            }
        }
        return read ? object : nil
    }

    /// A JSON document built byte by byte: literal pieces and escaped strings.
    struct Writer {
        private(set) var bytes: [UInt8] = []

        init(capacity: Int) {
            bytes.reserveCapacity(capacity)
        }

        /// JSON text as it is (the caller's literal keys and punctuation, or a document).
        mutating func raw(_ text: String) {
            bytes += text.utf8
        }

        /// `text` as a quoted, escaped JSON string.
        mutating func string(_ text: String) {
            JSONWriter.string(text, into: &bytes)
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
    static func escaped(_ text: String) -> String { JSONWriter.escaped(text) }
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
