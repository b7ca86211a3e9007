import Foundation
import JSONBytes
import PrewarmRuntime

/// The JSON of the downstream answers and the push message on the hot path, without
/// Foundation's generic coders (about a tenth of push-producer's CPU went to them), and one
/// way only: an answer is an object whose string members are read; its other members (a
/// number, a nested object a service added) are skipped, as a `Decodable` would skip keys it
/// does not know.
enum FlatJSON {
    /// The string members of a JSON object (every escape of their values read); other members
    /// skipped. nil for anything that is not one JSON object (or has a key with an escape).
    static func strings(_ bytes: [UInt8]) -> [String: String]? {
        var object: [String: String] = [:]
        let read = JSONReader.read(bytes) { reader in
            reader.object { reader, key in
                guard let key = reader.text(key) else { return false }
                guard reader.peek() == UInt8(ascii: "\"") else { return reader.skipValue() }
                guard let value = reader.string() else { return false }
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

}

/// An answer read from the string members of an object.
protocol FlatDecodable {
    init?(flat: [String: String])
}

extension FlatJSON {
    /// `bytes` as a `T`; nil when they are not an object or lack a member `T` needs (as a string).
    static func decode<T: FlatDecodable>(_ type: T.Type, _ bytes: [UInt8]) -> T? {
        strings(bytes).flatMap(T.init(flat:))
    }
}
