import Kafka
import PrewarmRuntime

/// entry-ingest's handler for `store.entry.v1`: validate, attach the store's category and
/// zone, store the rows (PostgreSQL first), then count the activity (Redis). Both steps are
/// idempotent, so a batch retried after either fails is safe.
public struct EntryIngestHandler: TopicHandler {
    public let decoder: StoreEntryDecoder
    public let directory: StoreDirectory
    public let writer: ShardWriter
    public let activity: ActivityWriter

    public init(decoder: StoreEntryDecoder, directory: StoreDirectory, writer: ShardWriter, activity: ActivityWriter) {
        self.decoder = decoder
        self.directory = directory
        self.writer = writer
        self.activity = activity
    }

    public func decode(_ message: KafkaMessage) throws -> StoreEntryEvent {
        try decoder.decode(message)
    }

    public func handle(_ batch: [Decoded<StoreEntryEvent>]) async throws {
        let events = batch.map(\.value)
        let stores = try await directory.lookup(Set(events.map(\.storeID)))
        if let unknown = events.first(where: { stores[$0.storeID] == nil }) {
            // The loop then handles the batch message by message, so only this one is dead-lettered.
            throw InvalidMessage("store \(unknown.storeID) does not exist", errorClass: "UnknownStore")
        }
        try await writer.write(events.map { ($0, stores[$0.storeID]!) })
        try await activity.record(events)
    }
}
