import Foundation
import Hummingbird
import MetricsTestKit
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
import TestSupport
import Testing

@testable import PrewarmRuntime

@Suite("The runtime's HTTP client against a real server", .closesResources)
struct DownstreamClientTests {
    @Test(
        "2xx answers; 5xx, 429 and time-outs are transient; other 4xx permanent; a closed port transient (both clients)",
        arguments: [true, false])
    func classification(ownPool: Bool) async throws {
        let server = try await LocalHTTPServer.start { router in
            router.get("ok") { _, _ in "{\"fine\":true}" }
            router.post("echo") { request, _ in
                String(buffer: try await request.body.collect(upTo: 1 << 16))
            }
            router.get("broken") { _, _ -> Response in Response(status: .internalServerError) }
            router.get("busy") { _, _ -> Response in Response(status: .tooManyRequests) }
            router.get("missing") { _, _ -> Response in Response(status: .notFound) }
            router.get("slow") { _, _ -> String in
                try await Task.sleep(for: .seconds(2))
                return "late"
            }
        }
        let metrics = TestMetrics()
        let client = DownstreamClient(
            connectTimeout: .seconds(2), callTimeout: .seconds(5), maxConnectionsPerHost: 4, metricsFactory: metrics,
            ownPool: ownPool)
        closeAfterTest { await client.shutdown() }
        func url(_ path: String) -> URL { URL(string: server.base + path)! }

        struct Fine: Decodable { let fine: Bool }
        #expect(try await client.get(url("/ok"), service: "test").decode(Fine.self).fine)
        let echoed = try await client.post(url("/echo"), json: Array("{\"a\":1}".utf8), service: "test")
        #expect(String(decoding: echoed.body, as: UTF8.self) == "{\"a\":1}")

        // The client's own limit is generous (a loaded CI machine is slow to answer even
        // /ok); /slow is asked with a call's limit shorter than its two seconds of sleep.
        for (path, kind, failure, timeout) in [
            ("/broken", DownstreamError.Kind.status(500), FailureKind.transient, Duration?.none),
            ("/busy", .status(429), .transient, nil),
            ("/missing", .status(404), .permanent, nil),
            ("/slow", .timeout, .transient, .milliseconds(300)),
        ] {
            let error = await #expect(throws: DownstreamError.self) {
                try await client.get(url(path), service: "abtest", timeout: timeout)
            }
            #expect(error?.kind == kind, "\(path)")
            #expect(error.map { Failure.kind(of: $0) } == failure, "\(path)")
            #expect(error?.description.hasPrefix("abtest") == true)
        }
        let closed = try TestEnvironment.freePort()
        let refused = await #expect(throws: DownstreamError.self) {
            try await client.get(URL(string: "http://127.0.0.1:\(closed)/x")!, service: "gone")
        }
        #expect(refused.map { Failure.kind(of: $0) } == .transient)

        // A call its admit refuses (an open circuit) fails without being sent or counted.
        struct Open: Error {}
        await #expect(throws: DownstreamError.self) {
            try await client.get(url("/ok"), service: "test", admit: { throw Open() })
        }
        // What an operator reads per service: calls by outcome, and how long answers took.
        func calls(_ service: String, _ outcome: String) -> Int64 {
            (try? metrics.expectCounter(
                "prewarm_downstream_calls_total", [("service", service), ("outcome", outcome)]))?.totalValue ?? 0
        }
        #expect(calls("test", "2xx") == 2)
        #expect(calls("abtest", "5xx") == 1 && calls("abtest", "4xx") == 2 && calls("abtest", "timeout") == 1)
        #expect(calls("gone", "connection") == 1)
        #expect(metrics.counters(label: "prewarm_downstream_calls_total").map(\.totalValue).reduce(0, +) == 7)
        let answered = try metrics.expectTimer("prewarm_downstream_call_duration_seconds", [("service", "abtest")])
        #expect(answered.values.count == 3 && answered.values.allSatisfy { $0 > 0 }, "the three answers, timed")
        #expect(
            try metrics.expectTimer("prewarm_downstream_call_duration_seconds", [("service", "test")]).values.count == 2
        )
    }
}
