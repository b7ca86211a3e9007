import CoreMetrics
import Foundation
import Logging
import Postgres
import Redis
import Synchronization

/// Where every product's alerts go: a critical log line, the counter
/// `prewarm_alerts_total{kind}`, the list of recent alerts in Redis (`prewarm:alerts`, which
/// `prewarmctl status` shows) and, when `PREWARM_ALERT_WEBHOOK` is set, a JSON POST with a
/// few bounded retries. Delivery to the webhook never blocks the caller; `close` waits for
/// the posts in flight.
public final class Alerts: Sendable {
    public static let recentKey = "prewarm:alerts"
    public static let recentKept = 200

    private let worker: String
    private let logger: Logger
    private let factory: any MetricsFactory
    private let outbox: AsyncStream<(kind: String, body: [UInt8])>.Continuation
    private let delivery: Task<Void, Never>
    /// `prewarm_alerts_total{kind}`.
    private let raised: MetricHandles<String, Counter>

    public init(
        worker: String, logger: Logger, metricsFactory: any MetricsFactory, redis: (any RedisClient)? = nil,
        webhook: URL? = nil, client: DownstreamClient? = nil
    ) {
        self.worker = worker
        self.logger = logger
        self.factory = metricsFactory
        self.raised = MetricHandles { kind in
            Counter(label: "prewarm_alerts_total", dimensions: [("kind", kind)], factory: metricsFactory)
        }
        // Every kind at 0 from the start: a counter that first appears at 1 has no increase in
        // Prometheus, and its first alert would never fire the rule.
        for kind in AlertCatalog.kinds { _ = raised[kind.name] }
        let (stream, continuation) = AsyncStream<(kind: String, body: [UInt8])>.makeStream()
        outbox = continuation
        // One delivery loop, in order: alerts are rare, and a slow webhook must not pile up tasks.
        delivery = Task {
            for await (kind, body) in stream {
                if let redis {
                    _ = try? await redis.pipeline([
                        RedisCommand("LPUSH", Self.recentKey, body),
                        RedisCommand("LTRIM", Self.recentKey, 0, Self.recentKept - 1),
                    ])
                }
                guard let webhook, let client else { continue }
                do {
                    _ = try await retrying(
                        "alert webhook",
                        policy: RetryPolicy(backoff: Backoff(initial: .milliseconds(500)), maxAttempts: 3),
                        logger: logger
                    ) { try await client.post(webhook, json: body, service: "alert webhook") }
                } catch {
                    logger.error("alert webhook failed", metadata: ["alert": "\(kind)", "error": "\(error)"])
                }
            }
        }
    }

    public func raise(_ kind: String, _ message: String, details: [String: String] = [:]) {
        let alert = Alert(kind: kind, message: message, worker: worker, at: Date(), details: details)
        var metadata: Logger.Metadata = ["alert": "\(kind)"]
        for (key, value) in details { metadata[key] = "\(value)" }
        logger.critical("ALERT: \(message)", metadata: metadata)
        counter(kind).increment()
        outbox.yield((kind, (try? JSONEncoder.prewarm.encode(alert)).map { [UInt8]($0) } ?? []))
    }

    /// Delivers the alerts still queued, then stops.
    public func close() async {
        outbox.finish()
        await delivery.value
    }

    private func counter(_ kind: String) -> Counter { raised[kind] }

    /// The latest alerts of the fleet, newest first.
    public static func recent(_ redis: any RedisClient, count: Int = 20) async throws -> [Alert] {
        let reply = try await redis.send("LRANGE", recentKey, 0, count - 1)
        return (reply.array ?? []).compactMap {
            $0.bytes.flatMap { try? JSONDecoder.prewarm.decode(Alert.self, from: Data($0)) }
        }
    }
}
