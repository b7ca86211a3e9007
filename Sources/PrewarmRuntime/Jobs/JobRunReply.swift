import Redis

/// The words a job-run script answers with, one enum per script: a reply is parsed once, by
/// `JobRunReply`, and a word the code does not know throws (a bug, or a script of another
/// version), never guessed into a state.
protocol JobRunReplyWord: RawRepresentable, CaseIterable, Sendable where RawValue == String {}

/// `JobRunScripts.claim`.
enum ClaimWord: String, JobRunReplyWord {
    /// Started: the detail is the new attempt.
    case start
    /// Taken over from a winner that stopped renewing: the detail is its owner.
    case resume
    /// Another pod holds the run: the detail is its state.
    case held
    /// The period ran (or waits for its batches): the detail is its state.
    case exists
    /// Recorded as skipped.
    case skipped
}

/// `JobRunScripts.recordBatch`.
enum RecordBatchWord: String, JobRunReplyWord {
    /// Counted: the detail is the run's final state if this batch ended it, else empty.
    case recorded
    /// Already counted (a replay).
    case duplicate
    /// Of an older attempt than the run's.
    case stale
}

/// `JobRunScripts.beginBatch`.
enum BeginBatchWord: String, JobRunReplyWord {
    /// The batch's lease taken: the detail is how many starts came before.
    case begin
    /// No record of the run.
    case orphan
    /// Of an older attempt: the detail is the current one.
    case stale
    /// Already recorded for its attempt.
    case recorded
    /// Another live consumer works it now: the detail is its token.
    case busy
    /// Begun this many times (the detail) by consumers that never came back.
    case crashed
}

/// `JobRunScripts.finishFanOut`.
enum FinishFanOutWord: String, JobRunReplyWord {
    /// The lease was no longer ours.
    case lost
    /// Waiting for its batches: the detail is the final state if every batch was recorded.
    case fannedOut = "fanned-out"
}

/// A script's `{word, detail}` reply.
struct JobRunReply<Word: JobRunReplyWord> {
    let word: Word
    let detail: String

    init(_ reply: RedisReply, of script: RedisScript) throws {
        let parts = (reply.array ?? []).map { $0.string ?? "" }
        guard parts.count == 2, let word = Word(rawValue: parts[0]) else {
            throw UnknownReply(what: "\(script.name) reply", reply: "\(reply)")
        }
        (self.word, self.detail) = (word, parts[1])
    }

    /// The detail as a number, or a throw naming the script.
    func number(_ script: RedisScript) throws -> Int {
        guard let value = Int(detail) else {
            throw UnknownReply(what: "\(script.name) \(word.rawValue)", reply: detail)
        }
        return value
    }

    /// The detail as a run's final state; nil when empty (not ended yet).
    var finalState: JobRunState? {
        get throws { detail.isEmpty ? nil : try JobRunState(recorded: detail) }
    }
}
