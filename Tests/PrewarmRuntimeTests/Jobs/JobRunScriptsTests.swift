import Foundation
import Redis
import TestSupport
import Testing

@testable import PrewarmRuntime

/// The job-run scripts on their own: the words they answer, the states they write, and the
/// claim's named arguments, run on a real Redis.
@Suite("Job-run scripts", .closesResources)
struct JobRunScriptsTests {
    /// Every `return {'word'` of a script's source.
    private func words(_ script: RedisScript) -> Set<String> {
        var found: Set<String> = []
        var rest = Substring(script.source)
        while let start = rest.range(of: "return {'") {
            rest = rest[start.upperBound...]
            guard let end = rest.firstIndex(of: "'") else { break }
            found.insert(String(rest[..<end]))
        }
        return found
    }

    private func known<Word: JobRunReplyWord>(_ word: Word.Type) -> Set<String> { Set(Word.allCases.map(\.rawValue)) }

    @Test("every word a script answers is one its reply parser knows, and every word it knows is answered")
    func replyWords() {
        #expect(words(JobRunScripts.claim) == known(ClaimWord.self))
        #expect(words(JobRunScripts.recordBatch) == known(RecordBatchWord.self))
        #expect(words(JobRunScripts.beginBatch) == known(BeginBatchWord.self))
        #expect(words(JobRunScripts.finishFanOut) == known(FinishFanOutWord.self))
    }

    @Test("a word no parser knows is an error naming the script, never a state guessed")
    func unknownWord() throws {
        let reply = RedisReply.array([.bulk(Array("begun".utf8)), .bulk([])])
        #expect(throws: UnknownReply.self) { try JobRunReply<BeginBatchWord>(reply, of: JobRunScripts.beginBatch) }
        let short = RedisReply.array([.bulk(Array("begin".utf8))])
        #expect(throws: UnknownReply.self) { try JobRunReply<BeginBatchWord>(short, of: JobRunScripts.beginBatch) }
        let begun = RedisReply.array([.bulk(Array("begin".utf8)), .bulk(Array("x".utf8))])
        let answer = try JobRunReply<BeginBatchWord>(begun, of: JobRunScripts.beginBatch)
        #expect(throws: UnknownReply.self) { try answer.number(JobRunScripts.beginBatch) }
    }

    @Test("the scripts spell no state: each is JobRunState's, through the states prelude")
    func statesSpelledOnce() {
        let scripts = [
            JobRunScripts.claim, JobRunScripts.recordBatch, JobRunScripts.beginBatch, JobRunScripts.finishFanOut,
            JobRunScripts.finish, JobRunScripts.settle,
        ]
        for script in scripts {
            let body = script.source.replacingOccurrences(of: JobRunScripts.states, with: "")
            for state in JobRunState.allCases {
                let spelled = body.components(separatedBy: "'\(state.rawValue)'").count - 1
                let answered = body.components(separatedBy: "return {'\(state.rawValue)'").count - 1
                #expect(spelled == answered, "\(script.name) spells '\(state.rawValue)' outside a reply word")
            }
        }
    }

    private func claim(
        _ redis: any RedisClient, job: String, owner: String, force: Bool = false, skip: Bool = false,
        deadline: Int64? = nil, due: Int64 = 1_700_000_000_000
    ) async throws -> JobRunReply<ClaimWord> {
        let period = "p1"
        let arguments = ClaimArguments(
            token: "\(owner):t", leaseMilliseconds: 60_000, now: 1_700_000_000_500, force: force, owner: owner,
            retentionMilliseconds: 86_400_000, member: "\(job):\(period)", deadline: deadline, job: job,
            period: period, skip: skip, due: due)
        let reply = try await redis.run(
            JobRunScripts.claim,
            keys: RedisArguments([
                JobRuns.leaseKey(job: job, period: period), JobRuns.progressKey(job: job, period: period),
                JobRuns.doneKey(job: job, period: period), JobRuns.runScopedKey("\(job):index"),
                JobRuns.runScopedKey("\(job):active"),
            ]),
            arguments: arguments.values)
        return try JobRunReply<ClaimWord>(reply, of: JobRunScripts.claim)
    }

    @Test(
        "claim by named arguments: the first starts attempt 1 with its deadline and due, the next is held, a forced one starts attempt 2",
        arguments: RedisTopology.allCases)
    func claimArguments(on topology: RedisTopology) async throws {
        let redis = try await topology.connect()
        let job = TestEnvironment.uniqueName("job")
        let first = try await claim(redis, job: job, owner: "a", deadline: 1_700_000_900_000)
        #expect(first.word == .start && first.detail == "1")
        let record = try await redis.send("HGETALL", JobRuns.progressKey(job: job, period: "p1")).array ?? []
        var fields: [String: String] = [:]
        for index in stride(from: 0, to: record.count - 1, by: 2) {
            fields[record[index].string ?? ""] = record[index + 1].string ?? ""
        }
        #expect(fields["state"] == JobRunState.running.rawValue && fields["owner"] == "a")
        #expect(fields["deadline_at"] == "1700000900000" && fields["due_at"] == "1700000000000")
        #expect(fields["started_at"] == "1700000000500" && fields["forced"] == "0")
        let second = try await claim(redis, job: job, owner: "b")
        #expect(second.word == .held && second.detail == JobRunState.running.rawValue)
        let forced = try await claim(redis, job: job, owner: "b", force: true)
        #expect(forced.word == .start && forced.detail == "2")
        #expect(try await redis.send("GET", JobRuns.leaseKey(job: job, period: "p1")).string == "b:t")
    }

    @Test(
        "a skipped claim records the period skipped with its due time, and takes no lease",
        arguments: RedisTopology.allCases)
    func skipped(on topology: RedisTopology) async throws {
        let redis = try await topology.connect()
        let job = TestEnvironment.uniqueName("job")
        let answer = try await claim(redis, job: job, owner: "a", skip: true, due: 1_699_999_000_000)
        #expect(answer.word == .skipped)
        let progress = JobRuns.progressKey(job: job, period: "p1")
        #expect(try await redis.send("HGET", progress, "state").string == JobRunState.skipped.rawValue)
        #expect(try await redis.send("HGET", progress, "due_at").string == "1699999000000")
        #expect(try await redis.send("EXISTS", JobRuns.leaseKey(job: job, period: "p1")) == .integer(0))
        let again = try await claim(redis, job: job, owner: "b")
        #expect(again.word == .exists && again.detail == JobRunState.skipped.rawValue)
    }
}
