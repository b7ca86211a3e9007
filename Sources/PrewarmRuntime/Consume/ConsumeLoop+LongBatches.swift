import CoreMetrics
import Kafka
import Logging
import PrewarmConfiguration
import ServiceLifecycle
import Synchronization

/// A batch that outlasts `longBatchAfter`: every partition paused and polled for membership only, then resumed where processing stands; rebalances held for.
extension ConsumeLoop {
    /// Pauses every partition and polls until a rebalance event arrives (or
    /// `longBatchAfter` passes, or the loop stops), then goes on from where processing
    /// stands.
    func holdForRebalance(_ state: inout PartitionStates) async throws {
        let partitions = state.assigned.subtracting(state.paused)
        logger.info(
            "group rebalancing: holding batches until it completes", metadata: ["partitions": "\(partitions.sorted())"])
        try await consumer.pause(Array(partitions))
        var report = Heartbeat()
        report.paused = partitions
        let deadline = ContinuousClock.now + configuration.longBatchAfter
        while report.events.isEmpty, ContinuousClock.now < deadline, !stopping.load(ordering: .relaxed) {
            try await pollPaused(into: &report)
            try await Task.sleep(for: .milliseconds(50))
        }
        try await resume(after: report, &state)
    }

    /// Runs `work`, and beside it polls and decodes the next batch (if `prefetch`). If the
    /// work outlasts `longBatchAfter`, pauses every partition and polls (for group membership
    /// only) until it ends, then resumes them where processing stands; the batch fetched
    /// ahead is then dropped, since the seek fetches it again.
    func guarded(
        _ state: inout PartitionStates, prefetch: Bool, _ work: @escaping @Sendable () async -> [Outcome]
    ) async throws -> ([Outcome], Result<Polled, any Error>?) {
        let assigned = state.assigned.subtracting(state.paused)
        let (outcome, heartbeat) = await withTaskGroup(of: GuardResult.self) { group in
            group.addTask { .work(await work()) }
            group.addTask { .heartbeat(await self.heartbeat(pausing: assigned, prefetch: prefetch)) }
            var outcome: [Outcome]?
            var heartbeat = Heartbeat()
            for await result in group {
                switch result {
                case .work(let finished):
                    outcome = finished
                    group.cancelAll()
                case .heartbeat(let report): heartbeat = report
                }
            }
            return (outcome!, heartbeat)
        }
        guard !heartbeat.paused.isEmpty else { return (outcome, heartbeat.ahead) }
        var report = heartbeat
        if case .success(let ahead) = heartbeat.ahead {
            report.events = ahead.rebalanceEvents + report.events
            ahead.noteSeen(in: &state)
        }
        try await resume(after: report, &state)
        if case .failure = heartbeat.ahead { return (outcome, heartbeat.ahead) }
        return (outcome, nil)
    }

    /// After polling with partitions paused: applies the rebalance events seen, resumes the
    /// paused partitions still assigned and seeks them to where processing stands (pausing
    /// dropped what was fetched).
    func resume(after report: Heartbeat, _ state: inout PartitionStates) async throws {
        for (partition, offset) in report.discarded { state.noteSeen(partition, offset: offset) }
        try await apply(report.events, to: &state)
        let resume = report.paused.intersection(state.assigned)
        try await consumer.resume(Array(resume))
        let positions = state.positions(of: resume)
        if !positions.isEmpty { try await consumer.seek(positions) }
        logger.info("partitions resumed after pausing", metadata: ["partitions": "\(resume.sorted())"])
    }

    /// One poll while partitions are paused, for group membership: notes the rebalance
    /// events and the first offset of each partition's discarded messages.
    func pollPaused(into report: inout Heartbeat) async throws {
        let poll = try await consumer.poll(maxMessages: 100, timeoutMilliseconds: 0)
        statistics.polled()
        report.events += poll.rebalanceEvents
        for message in poll.messages {
            let lowest = report.discarded[message.topicPartition] ?? message.offset
            report.discarded[message.topicPartition] = min(lowest, message.offset)
        }
    }

    enum GuardResult: Sendable {
        case work([Outcome])
        case heartbeat(Heartbeat)
    }

    struct Heartbeat: Sendable {
        /// The next batch, fetched and decoded while this one ran.
        var ahead: Result<Polled, any Error>?
        var paused: Set<KafkaTopicPartition> = []
        var events: [KafkaRebalanceEvent] = []
        var discarded: [KafkaTopicPartition: Int64] = [:]
    }

    func heartbeat(pausing partitions: Set<KafkaTopicPartition>, prefetch: Bool) async -> Heartbeat {
        var report = Heartbeat()
        let started = ContinuousClock.now
        if prefetch, !Task.isCancelled {
            do {
                report.ahead = .success(try await pollAndDecode())
            } catch {
                report.ahead = .failure(error)
                return report
            }
        }
        do {
            try await Task.sleep(until: started + configuration.longBatchAfter)
            logger.warning(
                "batch still running, pausing partitions to keep polling",
                metadata: ["after": "\(configuration.longBatchAfter)"])
            try await consumer.pause(Array(partitions))
            report.paused = partitions
            while !Task.isCancelled {
                try await pollPaused(into: &report)
                try await Task.sleep(for: configuration.heartbeatEvery)
            }
        } catch {
            // Cancelled because the batch finished (or the consumer failed: the loop sees it).
        }
        return report
    }
}
