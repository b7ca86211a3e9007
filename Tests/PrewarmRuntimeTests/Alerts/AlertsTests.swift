import Foundation
import Hummingbird
import Logging
import MetricsTestKit
import Redis
import TestSupport
import Testing

@testable import PrewarmRuntime

@Suite("Alerts: log, counter, recent list, webhook", .closesResources)
struct AlertsTests {
    @Test(
        "an alert is counted, kept in Redis for status, and POSTed to the webhook, retried after a failure",
        arguments: RedisTopology.allCases)
    func delivered(on topology: RedisTopology) async throws {
        let received = Collected<String>()
        let attempts = Tally()
        let server = try await LocalHTTPServer.start { router in
            router.post("hook") { request, _ -> Response in
                // The first delivery fails: the alert is sent again.
                if attempts.up() == 1 {
                    return Response(status: .serviceUnavailable)
                }
                let body = String(buffer: try await request.body.collect(upTo: 1 << 16))
                received.append(body)
                return Response(status: .noContent)
            }
        }
        let redis = try await topology.connect()
        let client = DownstreamClient(connectTimeout: .seconds(1), callTimeout: .seconds(2), maxConnectionsPerHost: 2)
        closeAfterTest { await client.shutdown() }
        let metrics = TestMetrics()
        let alerts = Alerts(
            worker: "test-worker", logger: Logger(label: "test"), metricsFactory: metrics, redis: redis,
            webhook: URL(string: server.base + "/hook"), client: client)
        let marker = TestEnvironment.uniqueName("deadline")
        alerts.raise("deadline-risk", "task \(marker) will miss its deadline", details: ["task": marker])
        await alerts.close()
        let bodies = received.all
        #expect(bodies.count == 1 && attempts.count == 2)
        let alert = try JSONDecoder.prewarm.decode(Alert.self, from: Data(bodies[0].utf8))
        #expect(alert.kind == "deadline-risk" && alert.worker == "test-worker" && alert.details["task"] == marker)
        #expect(try metrics.expectCounter("prewarm_alerts_total", [("kind", "deadline-risk")]).totalValue == 1)
        #expect(try await Alerts.recent(redis, count: 50).contains { $0.details["task"] == marker })
    }
}
