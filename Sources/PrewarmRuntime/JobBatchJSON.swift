import Foundation

/// A job batch's JSON without Foundation's generic coders, which spent milliseconds on a
/// batch of 500 ids (each id a trip through an unkeyed container), on every pod, for
/// every batch. The writer gives the same bytes as `JSONEncoder.prewarm` (sorted keys,
/// ISO 8601 time); the reader takes the plain shape the writer gives (strings without
/// escapes, integers, an array of integers, null) and leaves anything else (escapes,
/// fractions, unknown fields of other kinds) to `JSONDecoder`, which decides.
enum JobBatchJSON {
    static func encode(_ batch: JobBatch) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(160 + batch.ids.count * 8 + batch.job.utf8.count + batch.period.utf8.count)
        func raw(_ text: StaticString) {
            text.withUTF8Buffer { out.append(contentsOf: $0) }
        }
        func integer(_ value: Int64) {
            if value < 0 { out.append(UInt8(ascii: "-")) }
            var magnitude = value.magnitude
            var digits: [UInt8] = []
            repeat {
                digits.append(UInt8(48 + magnitude % 10))
                magnitude /= 10
            } while magnitude > 0
            out.append(contentsOf: digits.reversed())
        }
        func string(_ text: String) {
            out.append(UInt8(ascii: "\""))
            for byte in text.utf8 {
                switch byte {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), byte]
                case 0x0A: out += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
                case 0x0D: out += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
                case 0x09: out += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
                case 0x08: out += [UInt8(ascii: "\\"), UInt8(ascii: "b")]
                case 0x0C: out += [UInt8(ascii: "\\"), UInt8(ascii: "f")]
                case 0..<0x20:
                    let hex = Array("0123456789abcdef".utf8)
                    out += Array(#"\u00"#.utf8) + [hex[Int(byte >> 4)], hex[Int(byte & 15)]]
                default: out.append(byte)
                }
            }
            out.append(UInt8(ascii: "\""))
        }
        raw(#"{"attempt":"#)
        integer(Int64(batch.attempt))
        raw(#","batch":"#)
        integer(Int64(batch.batch))
        if let count = batch.batchCount {
            raw(#","batch_count":"#)
            integer(Int64(count))
        }
        raw(#","ids":["#)
        for (index, id) in batch.ids.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            integer(id)
        }
        raw(#"],"job":"#)
        string(batch.job)
        raw(#","period":"#)
        string(batch.period)
        raw(#","produced_at":"#)
        string(batch.producedAt.formatted(Date.ISO8601FormatStyle()))
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// The batch, if `bytes` has the plain shape; nil for the generic decoder to read.
    static func decode(_ bytes: [UInt8]) -> JobBatch? {
        var reader = Reader(bytes: bytes)
        var strings: [String: String] = [:]
        var integers: [String: Int64] = [:]
        var nulls: Set<String> = []
        var ids: [Int64]?
        guard reader.take(UInt8(ascii: "{")) else { return nil }
        if !reader.take(UInt8(ascii: "}")) {
            repeat {
                guard let key = reader.string(), reader.take(UInt8(ascii: ":")) else { return nil }
                switch reader.peek() {
                case UInt8(ascii: "\""):
                    guard let value = reader.string() else { return nil }
                    strings[key] = value
                case UInt8(ascii: "["):
                    guard key == "ids", let array = reader.integers() else { return nil }
                    ids = array
                case UInt8(ascii: "n"):
                    guard reader.literal("null") else { return nil }
                    nulls.insert(key)
                default:
                    guard let value = reader.integer() else { return nil }
                    integers[key] = value
                }
            } while reader.take(UInt8(ascii: ","))
            guard reader.take(UInt8(ascii: "}")) else { return nil }
        }
        guard reader.atEnd, let job = strings["job"], let period = strings["period"],
            let attempt = integers["attempt"].flatMap({ Int(exactly: $0) }),
            let batch = integers["batch"].flatMap({ Int(exactly: $0) }), let ids,
            let produced = strings["produced_at"],
            let producedAt = try? Date.ISO8601FormatStyle().parse(produced)
        else { return nil }
        var batchCount: Int?
        if let count = integers["batch_count"] {
            guard let exact = Int(exactly: count) else { return nil }
            batchCount = exact
        } else if strings["batch_count"] != nil {
            return nil  // a string where a number belongs: the generic decoder names it
        }
        // A known key with a value of the wrong kind: the generic decoder's error.
        for key in ["job", "period", "produced_at"] where integers[key] != nil || nulls.contains(key) { return nil }
        for key in ["attempt", "batch"] where strings[key] != nil || nulls.contains(key) { return nil }
        return JobBatch(
            job: job, period: period, attempt: attempt, batch: batch, batchCount: batchCount, ids: ids,
            producedAt: producedAt)
    }

    private struct Reader {
        let bytes: [UInt8]
        var index = 0

        var atEnd: Bool {
            mutating get {
                skipSpace()
                return index == bytes.count
            }
        }

        mutating func skipSpace() {
            while index < bytes.count,
                bytes[index] == 0x20 || bytes[index] == 0x0A || bytes[index] == 0x0D
                    || bytes[index] == 0x09
            {
                index += 1
            }
        }

        mutating func peek() -> UInt8? {
            skipSpace()
            return index < bytes.count ? bytes[index] : nil
        }

        mutating func take(_ byte: UInt8) -> Bool {
            guard peek() == byte else { return false }
            index += 1
            return true
        }

        mutating func literal(_ word: StaticString) -> Bool {
            let count = word.utf8CodeUnitCount
            guard index + count <= bytes.count,
                word.withUTF8Buffer({ $0.elementsEqual(bytes[index..<index + count]) })
            else { return false }
            index += count
            return true
        }

        /// A string without escapes or control characters.
        mutating func string() -> String? {
            guard take(UInt8(ascii: "\"")) else { return nil }
            let start = index
            while index < bytes.count {
                let byte = bytes[index]
                if byte == UInt8(ascii: "\"") {
                    index += 1
                    return String(validating: bytes[start..<index - 1], as: UTF8.self)
                }
                if byte == UInt8(ascii: "\\") || byte < 0x20 { return nil }
                index += 1
            }
            return nil
        }

        /// An integer without fraction or exponent, in range.
        mutating func integer() -> Int64? {
            skipSpace()
            let negative = index < bytes.count && bytes[index] == UInt8(ascii: "-")
            if negative { index += 1 }
            let start = index
            var value: Int64 = 0
            while index < bytes.count, bytes[index] >= 48, bytes[index] <= 57 {
                let (times, overflow) = value.multipliedReportingOverflow(by: 10)
                let (sum, overflow2) = times.addingReportingOverflow(Int64(bytes[index] - 48))
                guard !overflow, !overflow2 else { return nil }
                value = sum
                index += 1
            }
            let digits = index - start
            guard digits > 0, digits == 1 || bytes[start] != 48 else { return nil }  // no leading zero
            if index < bytes.count, [UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E")].contains(bytes[index]) {
                return nil
            }
            return negative ? -value : value
        }

        mutating func integers() -> [Int64]? {
            guard take(UInt8(ascii: "[")) else { return nil }
            var values: [Int64] = []
            if take(UInt8(ascii: "]")) { return values }
            repeat {
                guard let value = integer() else { return nil }
                values.append(value)
            } while take(UInt8(ascii: ","))
            return take(UInt8(ascii: "]")) ? values : nil
        }
    }
}
