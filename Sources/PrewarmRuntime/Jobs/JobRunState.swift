/// Where a job run stands, as its record (`{prewarm:runs}:run:<job>:<period>:progress`, field
/// `state`) and the scripts that move it say: the one place its words are spelled.
///
/// running → fanned-out (a fan-out waiting for its batches) → succeeded, partial or failed;
/// or skipped (a missed period outside its catch-up window). A run's outcome is honest:
/// - `succeeded`: every item worked;
/// - `partial`: some items failed (a batch set aside, users a downstream refused after every
///   retry) and the rest were worked;
/// - `failed`: nothing was worked (every batch failed), or the winner's body or fan-out
///   failed (its `error` says why).
/// A partial run's finish step may still recover its failed items (a final retry, a push
/// retried within its send window); the run then ends `succeeded`.
public enum JobRunState: String, Sendable, Codable, CaseIterable {
    case running
    case fannedOut = "fanned-out"
    case succeeded
    case partial
    case failed
    case skipped

    /// Ended: nothing more will be worked by its batches or its winner.
    public var isFinished: Bool {
        switch self {
        case .succeeded, .partial, .failed, .skipped: return true
        case .running, .fannedOut: return false
        }
    }

    /// A record's state; an unknown word is a bug to surface, never a state to guess.
    public init(recorded text: String) throws {
        guard let state = JobRunState(rawValue: text) else {
            throw UnknownReply(what: "job run state", reply: text)
        }
        self = state
    }
}
