import Foundation
import JSONBytes
import Postgres

/// A job batch's JSON without Foundation's generic coders, which spent milliseconds on a
/// batch of 500 ids (each id a trip through an unkeyed container), on every pod, for
/// every batch. The writer gives the same bytes as `JSONEncoder.prewarm` (sorted keys,
/// ISO 8601 time); the reader takes the shape the writer gives (strings, integers, an
/// array of integers, null) and leaves anything else (`\u` escapes, fractions, unknown
/// fields of other kinds) to `JSONDecoder`, which decides.
enum JobBatchJSON {
    static func encode(_ batch: JobBatch) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(160 + batch.ids.count * 8 + batch.job.utf8.count + batch.period.utf8.count)
        func raw(_ text: StaticString) {
            text.withUTF8Buffer { out.append(contentsOf: $0) }
        }
        func integer(_ value: Int64) { JSONWriter.integer(value, into: &out) }
        func string(_ text: String) { JSONWriter.string(text, into: &out) }
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
        string(RFC3339.display(batch.producedAt))
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// The batch, if `bytes` has the plain shape; nil for the generic decoder to read.
    static func decode(_ bytes: [UInt8]) -> JobBatch? {
        var strings: [String: String] = [:]
        var integers: [String: Int64] = [:]
        var nulls: Set<String> = []
        var ids: [Int64]?
        let read = JSONReader.read(bytes) { reader in
            reader.object { reader, keyBytes in
                guard let key = reader.text(keyBytes) else { return false }
                switch reader.peek() {
                case UInt8(ascii: "\""):
                    guard let value = reader.string() else { return false }
                    strings[key] = value
                case UInt8(ascii: "["):
                    guard key == "ids", let array = reader.integers() else { return false }
                    ids = array
                case UInt8(ascii: "n"):
                    guard reader.literal("null") else { return false }
                    nulls.insert(key)
                default:
                    guard let value = reader.integer() else { return false }
                    integers[key] = value
                }
                return true
            }
        }
        guard read, let job = strings["job"], let period = strings["period"],
            let attempt = integers["attempt"].flatMap({ Int(exactly: $0) }),
            let batch = integers["batch"].flatMap({ Int(exactly: $0) }), let ids,
            let produced = strings["produced_at"],
            let producedAt = RFC3339.parse(produced)
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
}
