import Foundation
import Kafka

/// Inputs at the extremes that every consumed topic must survive: each bad one is
/// dead-lettered with a class, none stops a partition or kills a pod. The same table for every
/// worker (`bad(template:key:ids:)`), for the tests and `make chaos`.
public enum ExtremeInputs {
    public struct Input: Sendable {
        public let name: String
        public let key: [UInt8]?
        public let value: [UInt8]
        public let headers: [KafkaHeader]

        public init(_ name: String, key: [UInt8]?, value: [UInt8], headers: [KafkaHeader] = []) {
            self.name = name
            self.key = key
            self.value = value
            self.headers = headers
        }

        public init(_ name: String, key: String?, json: String) {
            self.init(name, key: key.map { Array($0.utf8) }, value: Array(json.utf8))
        }
    }

    /// Kafka's default topic limit (`message.max.bytes` of a broker).
    public static let topicLimit = 1_048_576

    /// Bad inputs for a topic whose valid value is `template` (a JSON object), with `ids`
    /// naming its integer id fields: the value empty, binary, at and over the size limits,
    /// deeply nested, with unicode keys, not an object; each id field past int64, negative,
    /// zero, fractional, a string, null; keys empty, binary and huge; binary headers.
    public static func bad(template: String, key: String, ids: [String]) -> [Input] {
        var inputs: [Input] = [
            Input("empty value", key: key, json: ""),
            Input("binary value", key: Array(key.utf8), value: (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7) }),
            Input(
                "value at the topic's limit", key: Array(key.utf8),
                value: Array(("{\"pad\": \"" + String(repeating: "x", count: topicLimit - 12) + "\"}").utf8)),
            Input(
                "value over the dead-letter topic's limit", key: Array(key.utf8),
                value: (0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 &* 131) }),
            Input(
                "deeply nested JSON", key: key,
                json: String(repeating: "{\"a\":", count: 20_000) + "1" + String(repeating: "}", count: 20_000)),
            Input("deeply nested array", key: key, json: String(repeating: "[", count: 100_000)),
            Input("unicode keys", key: key, json: #"{"用户": 1, "🙂": "☃", "\u0000": null}"#),
            Input("a JSON array", key: key, json: "[" + template + "]"),
            Input("a JSON string", key: key, json: "\"" + template.replacingOccurrences(of: "\"", with: "'") + "\""),
            Input("truncated JSON", key: key, json: String(template.dropLast(3))),
            Input("invalid UTF-8", key: Array(key.utf8), value: Array(template.utf8.dropLast(2)) + [0xC3, 0x28, 0x7D]),
            Input("no key", key: nil, value: Array("{".utf8)),
            Input(
                "binary key and headers", key: [0, 0xFF, 0xFE, 0x80], value: Array("null".utf8),
                headers: [KafkaHeader("binary", [0, 0xFF, 0x80]), KafkaHeader("empty", nil)]),
            Input(
                "huge key", key: [UInt8](repeating: UInt8(ascii: "k"), count: 100_000), value: Array("{}".utf8)),
            Input(
                "huge headers", key: Array(key.utf8), value: Array("{}".utf8),
                headers: (0..<40).map { KafkaHeader("h\($0)", [UInt8](repeating: 0xAB, count: 1000)) }),
        ]
        for field in ids {
            for (label, value) in [
                ("past int64", "9223372036854775808"), ("far past int64", "1e30"), ("negative", "-1"),
                ("zero", "0"), ("fractional", "1.5"), ("a string", "\"42\""), ("null", "null"),
                ("int64 min", "-9223372036854775808"),
            ] {
                inputs.append(Input("\(field) \(label)", key: key, json: replacing(field, in: template, with: value)))
            }
        }
        return inputs
    }

    /// `template` with the integer value of `field` replaced by `value` (text).
    static func replacing(_ field: String, in template: String, with value: String) -> String {
        guard let range = template.range(of: "\"\(field)\":") ?? template.range(of: "\"\(field)\": ") else {
            return template
        }
        var end = range.upperBound
        while end < template.endIndex, template[end] == " " { end = template.index(after: end) }
        var stop = end
        while stop < template.endIndex, "-0123456789".contains(template[stop]) { stop = template.index(after: stop) }
        return String(template[..<end]) + value + String(template[stop...])
    }

    /// Produces the inputs (large messages allowed) and returns where each landed.
    public static func produce(_ inputs: [Input], to topic: String, bootstrap: String) async throws
        -> [KafkaDeliveryReport]
    {
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(
                bootstrapServers: bootstrap,
                properties: KafkaProperties(["message.max.bytes": "10000000"])))
        do {
            let reports = try await producer.send(
                inputs.map { KafkaProducerMessage(topic: topic, key: $0.key, value: $0.value, headers: $0.headers) })
            await producer.close()
            return reports
        } catch {
            await producer.close()
            throw error
        }
    }
}
