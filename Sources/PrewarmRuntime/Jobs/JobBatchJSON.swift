import Foundation
import JSONBytes
import Postgres

/// A job batch's JSON without Foundation's generic coders, which spent milliseconds on a
/// batch of 500 ids (each id a trip through an unkeyed container), on every pod, for
/// every batch. The writer gives the same bytes as `JSONEncoder.prewarm` (sorted keys,
/// ISO 8601 time); the reader reads any JSON of the batch's schema, the only way a batch is
/// read.
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

    /// The batch, or the first thing wrong with it: not JSON, a field of the wrong kind or
    /// given twice, a required one missing. Fields it does not know are skipped, whatever
    /// their kind.
    static func decode(_ bytes: [UInt8]) throws(JSONShapeError) -> JobBatch {
        var strings: [String: String] = [:]
        var integers: [String: Int64] = [:]
        var ids: [Int64]?
        var seen = Set<String>()
        var problem: String?
        let read = JSONReader.read(bytes) { reader in
            reader.object { reader, keyBytes in
                guard let key = reader.text(keyBytes) else {
                    problem = "a key is not UTF-8"
                    return false
                }
                guard seen.insert(key).inserted else {
                    problem = "\(key) is given twice"
                    return false
                }
                switch key {
                case "job", "period", "produced_at":
                    strings[key] = reader.string()
                    if strings[key] == nil { problem = "\(key) is not a string" }
                case "attempt", "batch":
                    integers[key] = reader.integer()
                    if integers[key] == nil { problem = "\(key) is not an integer" }
                case "batch_count":
                    if reader.peek() == UInt8(ascii: "n"), reader.literal("null") { break }
                    integers[key] = reader.integer()
                    if integers[key] == nil { problem = "batch_count is not an integer or null" }
                case "ids":
                    ids = reader.integers()
                    if ids == nil { problem = "ids is not an array of 64-bit integers" }
                default:
                    if !reader.skipValue() { problem = "the value of \(key) is not JSON" }
                }
                return problem == nil
            }
        }
        guard read else { throw JSONShapeError(problem ?? "not a JSON object") }
        func required<T>(_ value: T?, _ key: String) throws(JSONShapeError) -> T {
            guard let value else { throw JSONShapeError("\(key) is missing") }
            return value
        }
        let produced = try required(strings["produced_at"], "produced_at")
        guard let producedAt = RFC3339.parse(produced) else {
            throw JSONShapeError("produced_at '\(produced)' is not an RFC 3339 time")
        }
        return JobBatch(
            job: try required(strings["job"], "job"), period: try required(strings["period"], "period"),
            attempt: Int(try required(integers["attempt"], "attempt")),
            batch: Int(try required(integers["batch"], "batch")), batchCount: integers["batch_count"].map { Int($0) },
            ids: try required(ids, "ids"), producedAt: producedAt)
    }
}
