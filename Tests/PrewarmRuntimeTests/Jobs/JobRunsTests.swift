import Foundation
import Logging
import Redis
import TestSupport
import Testing

@testable import PrewarmRuntime

@Suite("Job-run records in Redis", .closesResources)
struct JobRunsTests {
    private func runs(on topology: RedisTopology, _ owner: String = "pod", lease: Duration = .seconds(10))
        async throws -> JobRuns
    {
        let redis = try await topology.connect()
        return JobRuns(
            redis: redis, settings: JobRunSettings(lease: lease), owner: owner, logger: Logger(label: "test"),
            alerts: nil)
    }

    private func start(_ runs: JobRuns, _ job: String, force: Bool = false) async throws -> JobRunLease {
        guard
            case .started(let lease) = try await runs.claim(
                job: job, period: "20261121", due: Date(), force: force, deadline: nil)
        else { throw UsageError("the run did not start") }
        return lease
    }

    private func batch(_ job: String, _ index: Int, attempt: Int = 1) -> JobBatch {
        JobBatch(job: job, period: "20261121", attempt: attempt, batch: index, batchCount: 4, ids: [1, 2, 3])
    }

    @Test(
        "a replayed batch counts once, and the run finishes exactly once, by whoever recorded its last batch",
        arguments: RedisTopology.allCases)
    func countsOnceFinishesOnce(on topology: RedisTopology) async throws {
        let runs = try await runs(on: topology)
        let job = TestEnvironment.uniqueName("job")
        let lease = try await start(runs, job)
        #expect(
            try await runs.recordBatch(batch(job, 0), itemsDone: 3, itemsFailed: 0, failed: false)
                == .recorded(finished: nil))
        #expect(try await runs.recordBatch(batch(job, 0), itemsDone: 3, itemsFailed: 0, failed: false) == .duplicate)
        #expect(try await runs.isRecorded(batch(job, 0)))
        #expect(try await lease.finishFanOut(batches: 4, items: 12) == nil, "three batches still out")
        let records = try await withThrowingTaskGroup(of: JobRuns.BatchRecord.self) { group in
            for index in 1..<4 {
                for _ in 0..<3 {  // each delivered three times at once
                    group.addTask {
                        try await runs.recordBatch(batch(job, index), itemsDone: 3, itemsFailed: 0, failed: false)
                    }
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(records.filter { $0 == .recorded(finished: .succeeded) }.count == 1)
        #expect(records.filter { $0 == .duplicate }.count == 6)
        let progress = try #require(try await runs.progress(job: job, period: "20261121"))
        #expect(progress.state == .succeeded && progress.batchesDone == 4 && progress.itemsDone == 12)
        #expect(progress.durationSeconds != nil && !progress.leased)
        #expect(try await runs.redis.send("EXISTS", JobRuns.doneKey(job: job, period: "20261121")) == .integer(1))
    }

    @Test(
        "outcomes are honest: items failed make a run partial, nothing worked makes it failed, never succeeded",
        arguments: RedisTopology.allCases)
    func honestOutcomes(on topology: RedisTopology) async throws {
        let runs = try await runs(on: topology)
        for (done, failed, batchFailed, expected) in [
            (3, 0, false, JobRunState.succeeded), (2, 1, false, .partial), (0, 3, true, .failed),
        ] {
            let job = TestEnvironment.uniqueName("job")
            let lease = try await start(runs, job)
            _ = try await lease.finishFanOut(batches: 1, items: 3)
            #expect(
                try await runs.recordBatch(batch(job, 0), itemsDone: done, itemsFailed: failed, failed: batchFailed)
                    == .recorded(finished: expected))
            let flag = try await runs.redis.send("EXISTS", JobRuns.doneKey(job: job, period: "20261121"))
            #expect(flag == .integer(expected == .succeeded ? 1 : 0), "the success flag only for a run that succeeded")
        }
    }

    @Test(
        "a failed batch makes the run partial (no success flag); a forced attempt ignores the old one's batches",
        arguments: RedisTopology.allCases)
    func failedAndForced(on topology: RedisTopology) async throws {
        let runs = try await runs(on: topology)
        let job = TestEnvironment.uniqueName("job")
        let lease = try await start(runs, job)
        _ = try await lease.finishFanOut(batches: 2, items: 6)
        _ = try await runs.recordBatch(batch(job, 0), itemsDone: 3, itemsFailed: 0, failed: false)
        #expect(
            try await runs.recordBatch(batch(job, 1), itemsDone: 0, itemsFailed: 3, failed: true)
                == .recorded(finished: .partial))
        #expect(try await runs.redis.send("EXISTS", JobRuns.doneKey(job: job, period: "20261121")) == .integer(0))
        guard
            case .exists("partial") = try await runs.claim(
                job: job, period: "20261121", due: Date(), force: false, deadline: nil)
        else {
            Issue.record("an unforced claim of a finished period ran again")
            return
        }
        let second = try await start(runs, job, force: true)
        #expect(second.attempt == 2)
        #expect(try await runs.recordBatch(batch(job, 1), itemsDone: 3, itemsFailed: 0, failed: false) == .stale)
        #expect(try await runs.progress(job: job, period: "20261121")?.batchesDone == 0)
    }

    @Test(
        "a fan-out of no batches succeeds at once; a winner whose lease was taken can no longer record progress",
        arguments: RedisTopology.allCases)
    func emptyAndFenced(on topology: RedisTopology) async throws {
        let runs = try await runs(on: topology)
        let empty = TestEnvironment.uniqueName("job")
        #expect(try await start(runs, empty).finishFanOut(batches: 0, items: 0) == .succeeded)

        let short = try await self.runs(on: topology, "slow", lease: .seconds(1))
        let job = TestEnvironment.uniqueName("job")
        let stalled = try await start(short, job)
        try await Task.sleep(for: .milliseconds(1200))  // the lease expires
        guard
            case .resumed(_, let progress, let previous) = try await runs.claim(
                job: job, period: "20261121", due: Date(), force: false, deadline: nil)
        else {
            Issue.record("the expired run was not taken over")
            return
        }
        #expect(progress.state == .running && previous == "slow")
        await #expect(throws: LeaseLost.self) { try await stalled.record([("cursor", 99)]) }
        #expect(try await runs.progress(job: job, period: "20261121")?.cursor == "", "nothing written by the old owner")
    }
}
