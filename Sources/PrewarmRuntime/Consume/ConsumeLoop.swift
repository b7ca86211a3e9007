import CoreMetrics
import Kafka
import Logging
import PrewarmConfiguration
import ServiceLifecycle
import Synchronization

/// The loop every worker runs: poll a batch, hand each topic's messages to its topic's
/// handler, commit what is durable, and never lose or stall on a message.
///
/// - Bad input (a decode or validation error, or a permanent handler error) goes to the
///   topic's DLQ with headers naming the error; the partition moves on. A letter the DLQ
///   refuses as it is (too large) is kept whole in PostgreSQL (`DeadLetterStore`) and a
///   reference letter goes to the DLQ in its place: that is no outage. A letter is sent once
///   however often its batch is retried, and, with `deadLetterMarks`, once per group however
///   often the message is handled (a rebalance before its commit, a replay).
/// - A transient failure (an outage) seeks the batch's partitions back to their first
///   messages, pauses them, and retries after an exponential, jittered backoff. Nothing is
///   committed past an unfinished batch and nothing goes to the DLQ for an outage.
/// - A batch running longer than `longBatchAfter` pauses every partition and keeps polling,
///   so the consumer never exceeds `max.poll.interval.ms` and stays in its group.
/// - While a batch is handled, the next poll is fetched and decoded, so the consumer's
///   copying and the decoding overlap the handler's writes instead of waiting for them.
///   What was fetched ahead for a partition that then fails or is revoked is dropped (the
///   seek, or the new owner, reads it again); nothing is committed before it is handled.
/// - A commit refused because the group is rebalancing pauses every partition and polls
///   until the rebalance arrives (at most `longBatchAfter`): batches handled meanwhile could
///   not be committed, and the partitions' next owners would handle them again. A commit
///   that fails otherwise is tried again with the next one, or alone a second later when no
///   message follows, so an idle group is not left with a lag a restart would replay.
/// - An outage retried for longer than `alertAfter` raises an alert (once per outage); it
///   goes on being retried.
/// - Each handler call is marked busy in `liveness`, so `/healthz` sees a call that hangs.
/// - On graceful shutdown it finishes the batch in hand, commits and leaves the group. It
///   owns (and closes) the consumer; the dead-letter producer is the worker's, closed after.
public final class ConsumeLoop: Service {
    public let configuration: ConsumeLoopConfiguration
    public let statistics: ConsumeLoopStatistics
    let consumer: KafkaConsumer
    let deadLetters: KafkaProducer
    let deadLetterStore: DeadLetterStore?
    let deadLetterMarks: DeadLetterMarks?
    /// Reads marked letters back before they are skipped (`DeadLetterAudit`).
    let deadLetterAudit: DeadLetterAudit
    /// Messages dead-lettered and not yet committed past: a batch retried after an outage of
    /// another part sends none of them again.
    let lettered = Mutex<[KafkaTopicPartition: Set<Int64>]>([:])
    let routes: [String: TopicRoute]
    let logger: Logger
    let liveness: Liveness
    let alerts: Alerts?
    let onLag: @Sendable ([KafkaTopicPartition: Int64]) async -> Void
    let stopping = Atomic<Bool>(false)
    let outageAlerted = Atomic<Bool>(false)
    /// What the loop waits on besides its handlers (whose time is `prewarm_batch_duration_seconds`):
    /// the next poll, when the one fetched beside the last batch is not there, and the commit
    /// (`prewarm_consume_stage_wait_seconds_total{group,stage}`).
    static let stages = ["poll", "commit"]
    let metricsFactory: any MetricsFactory

    public init(
        configuration: ConsumeLoopConfiguration, consumer: KafkaConsumer, deadLetterProducer: KafkaProducer,
        deadLetterStore: DeadLetterStore? = nil, deadLetterMarks: DeadLetterMarks? = nil, routes: [TopicRoute],
        logger: Logger,
        metricsFactory: any MetricsFactory = MetricsSystem.factory,
        liveness: Liveness = Liveness(), alerts: Alerts? = nil,
        onLag: @escaping @Sendable ([KafkaTopicPartition: Int64]) async -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.statistics = ConsumeLoopStatistics(group: configuration.groupID, factory: metricsFactory)
        self.metricsFactory = metricsFactory
        self.consumer = consumer
        self.deadLetters = deadLetterProducer
        self.deadLetterStore = deadLetterStore
        self.deadLetterMarks = deadLetterMarks
        self.deadLetterAudit = DeadLetterAudit(
            group: configuration.groupID, consumer: consumer.configuration, logger: logger)
        self.routes = Dictionary(routes.map { ($0.topic, $0) }) { first, _ in first }
        self.logger = logger
        self.liveness = liveness
        self.alerts = alerts
        self.onLag = onLag
    }

    public func run() async throws {
        try await withGracefulShutdownHandler {
            do {
                try await loop()
            } catch {
                // The worker stops (its group's other members take its partitions over): say why.
                if !(error is CancellationError) {
                    logger.error(
                        "consume loop stopped by an error",
                        metadata: ["group": "\(configuration.groupID)", "error": "\(error)"])
                }
                await close()
                throw error
            }
            await close()
        } onGracefulShutdown: {
            self.stopping.store(true, ordering: .relaxed)
        }
    }

    func close() async {
        await onLag([:])  // this pod no longer reads the group's partitions
        await consumer.close()
        await deadLetterAudit.close()
        logger.info("consumer left the group", metadata: ["group": "\(configuration.groupID)"])
    }

    func loop() async throws {
        try await consumer.subscribe(routes.keys.sorted())
        var state = PartitionStates()
        var ahead: Polled?
        // Offsets whose commit failed (the coordinator moving, a request error): tried again
        // with the next commit, or on their own once `retryAt` passes, so an idle group does
        // not keep a lag that a restart would replay.
        var unconfirmed: (offsets: [KafkaTopicPartition: Int64], retryAt: ContinuousClock.Instant) = ([:], .now)
        let waits = StageWaits(
            label: "prewarm_consume_stage_wait_seconds_total", stages: Self.stages,
            dimensions: [("group", configuration.groupID)], factory: metricsFactory)
        while !stopping.load(ordering: .relaxed) {
            try await resumeDue(&state)
            let poll: Polled
            if let fetched = ahead {
                poll = fetched
                ahead = nil
            } else {
                let pollStarted = ContinuousClock.now
                poll = try await pollAndDecode()
                if !poll.topics.isEmpty { waits.record("poll", since: pollStarted) }
            }
            try await apply(poll.rebalanceEvents, to: &state)
            for error in poll.errors {
                logger.warning("kafka consumer error", metadata: ["error": "\(error)"])
            }
            var committable: [KafkaTopicPartition: Int64] = [:]
            for decoded in poll.topics {
                // Grouped only now: a long batch of the topic before may have seen a
                // partition revoked, and its new owner reads those messages.
                let owned = state.partitionIndices(of: decoded.messages, skipping: poll.rewound)
                guard let topic = owned.first?.0.topic else { continue }
                let consumed = owned.map(\.1.count).reduce(0, +)
                statistics.consumed(topic, consumed)
                let lanes = Self.lanes(owned, count: configuration.concurrentBatches)
                let started = ContinuousClock.now
                let prefetch = ahead == nil && !stopping.load(ordering: .relaxed)
                let (outcomes, fetched) = try await guarded(&state, prefetch: prefetch) {
                    // `process` never throws: each lane's outcome comes back in its place.
                    (try? await concurrentMap(lanes, limit: lanes.count) { lane in
                        await self.process(lane.flatMap(\.1), of: decoded)
                    }) ?? lanes.map { _ in .retry(CancellationError()) }
                }
                if let fetched { ahead = try fetched.get() }
                statistics.batchDuration(topic, .now - started)
                for (lane, outcome) in zip(lanes, outcomes) {
                    let stillOwned = lane.filter { state.isAssigned($0.0) }  // revoked while it ran
                    switch outcome {
                    case .done:
                        for (partition, indices) in stillOwned {
                            let next = decoded.messages[indices.last!].offset + 1
                            state.succeeded(partition, next: next)
                            committable[partition] = next
                        }
                        let count = stillOwned.map(\.1.count).reduce(0, +)
                        statistics.processed(topic, count)
                        if count > 0 { outageAlerted.store(false, ordering: .relaxed) }
                    case .retry(let error):
                        noteOutage(since: statistics.failedTransiently(topic), topic: topic, error: error)
                        try await retryLater(
                            Dictionary(
                                uniqueKeysWithValues: stillOwned.map { ($0.0, decoded.messages[$0.1[0]].offset) }),
                            error: error, &state)
                        // The poll fetched beside this batch holds these partitions' later
                        // messages; the seek fetches them again after the failed ones.
                        ahead?.rewound.formUnion(stillOwned.map(\.0))
                    }
                }
            }
            // A rebalance the poll ahead saw is applied before committing, so that nothing is
            // committed for a partition this member no longer owns.
            if !(ahead?.rebalanceEvents.isEmpty ?? true) {
                try await apply(ahead!.rebalanceEvents, to: &state)
                ahead!.rebalanceEvents = []
            }
            // Only what this member still owns: a revoked partition's offset would make the
            // broker refuse the whole commit.
            var committing = committable.filter { state.isAssigned($0.key) }
            if !unconfirmed.offsets.isEmpty && (!committing.isEmpty || ContinuousClock.now >= unconfirmed.retryAt) {
                committing.merge(unconfirmed.offsets.filter { state.isAssigned($0.key) }) { max($0, $1) }
            }
            let commitStarted = ContinuousClock.now
            let outcome = await commit(committing)
            if !committing.isEmpty { waits.record("commit", since: commitStarted) }
            switch outcome {
            case .done:
                forgetLettered(committed: committing, owned: state.assigned)
                unconfirmed.offsets = unconfirmed.offsets.filter { committing[$0.key] == nil }
            case .failed, .rebalancing:
                unconfirmed = (
                    unconfirmed.offsets.merging(committing) { max($0, $1) },
                    .now + configuration.retryBackoff.initial * 5
                )
            }
            unconfirmed.offsets = unconfirmed.offsets.filter { state.isAssigned($0.key) }
            if outcome == .rebalancing {
                if let dropped = ahead {
                    dropped.noteSeen(in: &state)
                    ahead = nil
                }
                try await holdForRebalance(&state)
            }
            await recordLag(state)
        }
    }

    /// A poll, its messages decoded by their topics' routes.
    struct Polled: Sendable {
        /// Per topic, in the order the poll first saw them.
        var topics: [DecodedMessages]
        var rebalanceEvents: [KafkaRebalanceEvent]
        var errors: [KafkaError]
        /// Partitions sought back after this poll was fetched: its messages of them are
        /// skipped (a backoff that ended before it is handled must not let them pass the
        /// failed ones).
        var rewound: Set<KafkaTopicPartition> = []

        /// Dropped unprocessed: where each partition without a position starts again.
        func noteSeen(in state: inout PartitionStates) {
            for decoded in topics {
                for message in decoded.messages { state.noteSeen(message.topicPartition, offset: message.offset) }
            }
        }
    }

    func pollAndDecode() async throws -> Polled {
        let poll = try await consumer.poll(
            maxMessages: configuration.maxBatchMessages, timeoutMilliseconds: configuration.maxBatchWait.milliseconds)
        statistics.polled()
        var topics: [[KafkaMessage]] = []
        if let first = poll.messages.first?.topic, poll.messages.allSatisfy({ $0.topic == first }) {
            topics = [poll.messages]  // the usual case: one topic, no copy
        } else {
            var index: [String: Int] = [:]
            for message in poll.messages {
                if let position = index[message.topic] {
                    topics[position].append(message)
                } else {
                    index[message.topic] = topics.count
                    topics.append([message])
                }
            }
        }
        return Polled(
            topics: topics.map { routes[$0[0].topic]?.decode($0) ?? DecodedMessages.unrouted($0) },
            rebalanceEvents: poll.rebalanceEvents, errors: poll.errors)
    }

    /// Lag per assigned partition: the high watermark (as last fetched) less the next
    /// offset to process.
    func recordLag(_ state: PartitionStates) async {
        let positions = state.positions(of: state.assigned)
        guard !positions.isEmpty, let highs = try? await consumer.cachedHighWatermarks(Array(positions.keys)) else {
            return
        }
        var lags: [KafkaTopicPartition: Int64] = [:]
        for (partition, position) in positions {
            if let high = highs[partition] {
                lags[partition] = max(high - position, 0)
                statistics.lag(partition, lags[partition]!)
            }
        }
        await onLag(lags)
    }

    enum Outcome: Sendable {
        case done
        case retry(any Error)
    }

    /// Handles the messages of one lane (at these indices); dead-letters what is bad.
    func process(_ indices: [Int], of decoded: DecodedMessages) async -> Outcome {
        let topic = decoded.messages[indices[0]].topic
        var good: [Int] = []
        var dead: [DeadLetter] = []
        if decoded.failures.isEmpty {
            good = indices
        } else {
            for index in indices {
                if let error = decoded.failures[index] {
                    dead.append(DeadLetter(message: decoded.messages[index], error: error))
                } else {
                    good.append(index)
                }
            }
        }
        guard let route = routes[topic] else {
            return await deadLetter(dead, topic: TopicSpec.deadLetterTopic(of: topic))
        }
        if let error = await handle(good, of: decoded, dead: &dead, namedBadItems: true) { return .retry(error) }
        return await deadLetter(dead, topic: route.deadLetterTopic)
    }

    /// Hands the messages at `indices` to the route. Bad items the handler names
    /// (`InvalidItems`, by position in what it was handed) are dead-lettered and the rest
    /// handed back once; any other permanent error means something in the batch is bad, so
    /// the items go one by one to find it (handlers are idempotent). Returns the error of
    /// an outage, for a retry.
    func handle(
        _ indices: [Int], of decoded: DecodedMessages, dead: inout [DeadLetter], namedBadItems: Bool
    ) async -> (any Error)? {
        guard !indices.isEmpty else { return nil }
        do {
            try await liveness.busy("handler of \(decoded.messages[indices[0]].topic)") {
                try await decoded.handle(indices)
            }
            return nil
        } catch let error where Failure.kind(of: error) == .transient {
            return error
        } catch let invalid as InvalidItems where namedBadItems {
            for (position, error) in invalid.errors where indices.indices.contains(position) {
                dead.append(DeadLetter(message: decoded.messages[indices[position]], error: error))
            }
            let rest = indices.indices.filter { invalid.errors[$0] == nil }.map { indices[$0] }
            return await handle(rest, of: decoded, dead: &dead, namedBadItems: false)
        } catch {
            for index in indices {
                do {
                    if indices.count > 1 {
                        try await liveness.busy("handler of \(decoded.messages[index].topic)") {
                            try await decoded.handle([index])
                        }
                    } else {
                        throw error
                    }
                } catch let error where Failure.kind(of: error) == .transient {
                    return error
                } catch let invalid as InvalidItems {
                    dead.append(
                        DeadLetter(message: decoded.messages[index], error: invalid.errors.values.first ?? invalid))
                } catch {
                    dead.append(DeadLetter(message: decoded.messages[index], error: error))
                }
            }
            return nil
        }
    }

    /// An outage that has lasted past `alertAfter` raises one alert (until a batch succeeds).
    func noteOutage(since: ContinuousClock.Instant, topic: String, error: any Error) {
        guard ContinuousClock.now - since >= configuration.alertAfter,
            !outageAlerted.exchange(true, ordering: .relaxed)
        else { return }
        alerts?.raise(
            "outage",
            "group \(configuration.groupID) has been retrying \(topic) for \(ContinuousClock.now - since): \(error)",
            details: ["group": configuration.groupID, "topic": topic])
    }

    /// Seeks every partition of a failed batch back to its first message and pauses them
    /// for the backoff of the most-retried one.
    func retryLater(
        _ offsets: [KafkaTopicPartition: Int64], error: any Error, _ state: inout PartitionStates
    ) async throws {
        guard !offsets.isEmpty else { return }
        let attempt = offsets.map { state.failed($0.key, from: $0.value) }.max()!
        let delay = configuration.retryBackoff.delay(attempt: attempt)
        for partition in offsets.keys { state.pause(partition, until: .now + delay) }
        try await consumer.pause(Array(offsets.keys))
        // A seek that fails (its wait for the fetcher timed out on a loaded host, a partition
        // mid-transition) is tried again: ending the loop over it would stop the pod.
        try await retrying(
            "seeking back to the failed batch",
            policy: RetryPolicy(
                backoff: Backoff(initial: .milliseconds(200), maximum: .seconds(2)), maxAttempts: 8,
                retryable: { _ in true }),
            logger: logger
        ) {
            try await consumer.seek(offsets)
        }
        statistics.update { $0.pausedPartitions.formUnion(offsets.keys) }
        logger.warning(
            "batch failed transiently, partitions paused",
            metadata: [
                "partitions": "\(offsets.keys.sorted())", "attempt": "\(attempt + 1)", "retry_in": "\(delay)",
                "error": "\(error)",
            ])
    }

    /// Splits a topic's batch into at most `count` lanes of whole partitions, each about
    /// the same number of messages (largest partition first into the emptiest lane).
    static func lanes<Item>(
        _ batch: [(KafkaTopicPartition, [Item])], count: Int
    ) -> [[(KafkaTopicPartition, [Item])]] {
        guard count > 1, batch.count > 1 else { return [batch] }
        var lanes = [[(KafkaTopicPartition, [Item])]](repeating: [], count: min(count, batch.count))
        var sizes = [Int](repeating: 0, count: lanes.count)
        for entry in batch.sorted(by: { $0.1.count > $1.1.count }) {
            let emptiest = sizes.indices.min { sizes[$0] < sizes[$1] }!
            lanes[emptiest].append(entry)
            sizes[emptiest] += entry.1.count
        }
        return lanes.map { $0.sorted { $0.0 < $1.0 } }
    }

    enum CommitOutcome { case done, failed, rebalancing }

    /// Commits `offsets`; a failure is not fatal (the loop tries them again, and a replay is
    /// idempotent), a refusal because the group is rebalancing holds the batches.
    func commit(_ offsets: [KafkaTopicPartition: Int64]) async -> CommitOutcome {
        guard !offsets.isEmpty else { return .done }
        do {
            try await consumer.commit(offsets: offsets)
            return .done
        } catch {
            statistics.commitFailed()
            logger.warning("offset commit failed", metadata: ["error": "\(error)"])
            if let error = error as? KafkaError, error.isGroupRebalancing { return .rebalancing }
            return .failed
        }
    }

}
