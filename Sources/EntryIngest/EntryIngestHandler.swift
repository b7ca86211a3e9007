import CoreMetrics
import Kafka
import PrewarmRuntime

/// entry-ingest's handler for `store.entry.v1`: validate, attach the store's category and
/// zone, then store the rows (PostgreSQL) and count the activity (Redis) side by side. Both
/// steps are idempotent, so a batch retried after either fails is safe.
public struct EntryIngestHandler: TopicHandler {
    public let decoder: StoreEntryDecoder
    public let directory: StoreDirectory
    public let writer: ShardWriter
    public let activity: ActivityWriter
    /// Each store's time per batch (`prewarm_ingest_stage_seconds_total{stage}`): the store
    /// lookup, then the rows and the activity, which run side by side (the longer of the two
    /// is what the batch waits on).
    let stages: StageWaits?
    static let stageNames = ["stores", "postgres", "redis"]

    public init(
        decoder: StoreEntryDecoder, directory: StoreDirectory, writer: ShardWriter, activity: ActivityWriter,
        metricsFactory: (any MetricsFactory)? = nil
    ) {
        self.decoder = decoder
        self.directory = directory
        self.writer = writer
        self.activity = activity
        self.stages = metricsFactory.map {
            StageWaits(label: "prewarm_ingest_stage_seconds_total", stages: Self.stageNames, factory: $0)
        }
    }

    public func decode(_ message: KafkaMessage) throws -> StoreEntryEvent {
        try decoder.decode(message)
    }

    public func handle(_ batch: [Decoded<StoreEntryEvent>]) async throws {
        let events = batch.map(\.value)
        let started = ContinuousClock.now
        let stores = try await directory.lookup(Set(events.map(\.storeID)))
        stages?.record("stores", since: started)
        var unknown: [Int: InvalidMessage] = [:]
        for (index, event) in events.enumerated() where stores[event.storeID] == nil {
            unknown[index] = InvalidMessage("store \(event.storeID) does not exist", errorClass: "UnknownStore")
        }
        // The loop dead-letters these and hands the rest back in one call.
        guard unknown.isEmpty else { throw InvalidItems(unknown) }
        // Both at once: the rows and the activity do not depend on each other, and both
        // are idempotent, so if either fails the whole batch is retried safely.
        let writing = ContinuousClock.now
        async let rows: Void = {
            _ = try await writer.write(events.map { ($0, stores[$0.storeID]!) })
            stages?.record("postgres", since: writing)
        }()
        async let days: Void = {
            _ = try await activity.record(events)
            stages?.record("redis", since: writing)
        }()
        _ = try await (rows, days)
    }
}
