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
    /// A poll's messages of one topic are split, by partition, into at most this many
    /// batches handled at once, so one batch's decoding overlaps another's database round
    /// trips. A handler then sees concurrent calls, each for partitions of its own; 1 keeps
    /// calls one at a time.
    public var concurrentBatches: Int
    /// An outage retried this long raises an alert (the loop goes on retrying).
    public var alertAfter: Duration

    public init(
        groupID: String,
        maxBatchMessages: Int = 500,
        maxBatchWait: Duration = .milliseconds(500),
        retryBackoff: Backoff = Backoff(),
        longBatchAfter: Duration = .seconds(10),
        heartbeatEvery: Duration = .seconds(1),
        concurrentBatches: Int = 1,
        alertAfter: Duration = .seconds(300)
    ) {
        self.alertAfter = alertAfter
        self.concurrentBatches = max(concurrentBatches, 1)
        self.groupID = groupID
        self.maxBatchMessages = maxBatchMessages
        self.maxBatchWait = maxBatchWait
        self.retryBackoff = retryBackoff
        self.longBatchAfter = longBatchAfter
        self.heartbeatEvery = heartbeatEvery
    }
}
