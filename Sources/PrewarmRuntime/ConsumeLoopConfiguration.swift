/// How a worker consumes. Defaults suit prewarm's workers; executables override them from
/// `PREWARM_*` variables.
public struct ConsumeLoopConfiguration: Sendable {
    public var groupID: String
    /// At most this many messages per poll (and so per partition batch).
    public var maxBatchMessages: Int
    /// How long a poll waits for the first message.
    public var maxBatchWait: Duration
    /// Pause between retries of a batch that failed transiently.
    public var retryBackoff: Backoff
    /// A batch running longer than this pauses every partition and keeps polling, so the
    /// consumer stays in its group however long the handler takes.
    public var longBatchAfter: Duration
    /// How often to poll while a long batch runs.
    public var heartbeatEvery: Duration

    public init(
        groupID: String,
        maxBatchMessages: Int = 500,
        maxBatchWait: Duration = .milliseconds(500),
        retryBackoff: Backoff = Backoff(),
        longBatchAfter: Duration = .seconds(10),
        heartbeatEvery: Duration = .seconds(1)
    ) {
        self.groupID = groupID
        self.maxBatchMessages = maxBatchMessages
        self.maxBatchWait = maxBatchWait
        self.retryBackoff = retryBackoff
        self.longBatchAfter = longBatchAfter
        self.heartbeatEvery = heartbeatEvery
    }
}

extension Duration {
    var milliseconds: Int {
        Int(components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000)
    }
}
