import Foundation
import Kafka
import Testing

@testable import PrewarmRuntime

@Suite("A job batch's JSON, written and read without the generic coders")
struct JobBatchJSONTests {
    let at = Date(timeIntervalSince1970: 1_783_000_000)

    var batches: [JobBatch] {
        [
            JobBatch(
                job: "book-rec-push", period: "2026112123", attempt: 1, batch: 4, batchCount: 12, ids: [1, 2, 90017]),
            JobBatch(job: "store-score", period: "20261121", attempt: 3, batch: 0, batchCount: nil, ids: []),
            JobBatch(
                job: #"a "quoted" \ job/with slash"#, period: "line\nbreak\ttab\u{1}\u{1F}é中🙂", attempt: 12,
                batch: 1_000_000, batchCount: 0, ids: [Int64.max, -5, 0, Int64.min + 1]),
        ].map {
            var batch = $0
            batch.producedAt = at
            return batch
        }
    }

    func message(_ json: String) -> KafkaMessage {
        KafkaMessage(topic: "t", partition: 0, offset: 0, key: nil, value: Array(json.utf8))
    }

    @Test("the writer gives the generic encoder's bytes, and the reader reads them back without it")
    func roundTrip() throws {
        for batch in batches {
            let written = JobBatchJSON.encode(batch)
            #expect(written == [UInt8](try JSONEncoder.prewarm.encode(batch)), "\(batch.job)")
            // Read directly, `\u` escapes (this batch's control characters) included.
            #expect(try JobBatchJSON.decode(written) == batch, "\(batch.job)")
            #expect(try JobBatch.decode(message(String(decoding: written, as: UTF8.self))) == batch)
        }
    }

    @Test("unusual but valid JSON reads the same as with the generic decoder")
    func unusualShapes() throws {
        let variants = [
            #"{ "job" : "j", "period":"20261121", "attempt": 1, "batch": 2, "ids": [ 3 , 4 ], "produced_at": "2026-07-02T13:46:40Z" } "#,
            #"{"ids":[3,4],"produced_at":"2026-07-02T21:46:40+08:00","batch":2,"attempt":1,"period":"20261121","job":"\u006a"}"#,
            #"{"job":"j","period":"20261121","attempt":1,"batch":2,"batch_count":null,"ids":[3,4],"produced_at":"2026-07-02T13:46:40Z","note":{"x":[1.5]}}"#,
        ]
        for json in variants {
            let expected = try JSONDecoder.prewarm.decode(JobBatch.self, from: Data(json.utf8))
            #expect(try JobBatch.decode(message(json)) == expected)
            #expect(expected.job == "j" && expected.ids == [3, 4] && expected.producedAt == at)
        }
    }

    @Test("malformed or mistyped batches are refused, as the generic decoder refuses them, naming the problem")
    func refused() {
        let bad = [
            (#"{"job":"j","period":"p","attempt":1,"batch":2,"produced_at":"2026-07-02T13:46:40Z"}"#, "ids is missing"),
            (
                #"{"job":"j","period":"p","attempt":1,"batch":2,"ids":[1.5],"produced_at":"2026-07-02T13:46:40Z"}"#,
                "ids is not an array of 64-bit integers"
            ),
            (
                #"{"job":"j","period":"p","attempt":"1","batch":2,"ids":[1],"produced_at":"2026-07-02T13:46:40Z"}"#,
                "attempt is not an integer"
            ),
            (
                #"{"job":"j","period":"p","attempt":1,"batch":2,"ids":[1],"produced_at":"yesterday"}"#,
                "produced_at 'yesterday' is not an RFC 3339 time"
            ),
            (
                #"{"job":"j","period":"p","attempt":1,"batch":2,"ids":[99999999999999999999],"produced_at":"2026-07-02T13:46:40Z"}"#,
                "ids is not an array of 64-bit integers"
            ),
            (
                #"{"job":"j","period":"p","attempt":1,"batch":2,"ids":[1],"produced_at":"2026-07-02T13:46:40Z"} x"#,
                "not a JSON object"
            ),
            (#"{"job":"j","period":"p","attempt":1,"batch":2,"ids":[1"#, "ids is not an array of 64-bit integers"),
            (
                #"{"job":null,"period":"p","attempt":1,"batch":2,"ids":[1],"produced_at":"2026-07-02T13:46:40Z"}"#,
                "job is not a string"
            ),
            (
                #"{"job":"j","period":"p","attempt":1,"batch":2,"batch_count":"3","ids":[1],"produced_at":"2026-07-02T13:46:40Z"}"#,
                "batch_count is not an integer or null"
            ),
            (#"{"job":"j","job":"k","period":"p"}"#, "job is given twice"),
            (#"{"job":"j","note":[1,}"#, "the value of note is not JSON"),
            (#"[]"#, "not a JSON object"),
        ]
        for (json, reason) in bad {
            #expect((try? JSONDecoder.prewarm.decode(JobBatch.self, from: Data(json.utf8))) == nil, "\(json)")
            let error = #expect(throws: InvalidMessage.self, "\(json)") { try JobBatch.decode(message(json)) }
            #expect(error?.reason == "not a job batch: \(reason)", "\(json)")
        }
    }
}
