/// Every alert kind the fleet raises (`Alerts.raise`): its severity and what an on-call person
/// reads first. `deploy/prometheus/prewarm-alerts.yaml` has a rule for each, README a runbook
/// entry (`#alert-<kind>`); a test keeps the three and the code's `raise` calls equal.
public enum AlertCatalog {
    public struct Kind: Sendable, Equatable {
        public let name: String
        /// `page` wakes someone; `ticket` is for the next working day.
        public let severity: String
        public let summary: String
    }

    public static let kinds: [Kind] = [
        Kind(
            name: "outage", severity: "page",
            summary:
                "A consumer group has retried an outage (Redis, PostgreSQL, a downstream or Kafka) for longer than PREWARM_RETRY_ALERT_AFTER_S."
        ),
        Kind(
            name: "dead-letter-not-kept", severity: "page",
            summary:
                "A dead letter was refused by its DLQ and this worker has no PostgreSQL to keep it; its partition stops there."
        ),
        Kind(
            name: "dead-letter-lost-by-broker", severity: "page",
            summary: "Kafka lost dead letters it had acknowledged; prewarm sent them again."),
        Kind(name: "retry-exhausted", severity: "ticket", summary: "A retry-table item ran out of attempts."),
        Kind(name: "task-failed", severity: "page", summary: "A durable task failed: its runners kept dying on it."),
        Kind(name: "job-failed", severity: "page", summary: "A scheduled job run failed."),
        Kind(name: "job-partial", severity: "ticket", summary: "A job run ended with failed items."),
        Kind(name: "job-late", severity: "ticket", summary: "A job run finished after its deadline."),
        Kind(name: "job-deadline-missed", severity: "page", summary: "A job run is not done by its deadline."),
        Kind(
            name: "job-run-missed", severity: "ticket",
            summary: "A job missed its run and it is past its catch-up window: skipped."),
        Kind(name: "job-fire-failing", severity: "page", summary: "A job cannot claim its run (Redis unreachable)."),
        Kind(
            name: "job-fan-out-stalled", severity: "page",
            summary: "A job's fan-out cannot go on (its source or Kafka failing)."),
        Kind(
            name: "job-finish-failed", severity: "ticket",
            summary: "A job ended but its last step (the finish hook) failed."),
        Kind(
            name: "job-lease-lost", severity: "ticket",
            summary:
                "A pod lost a job run's lease (stalled past its lease, or Redis lost it); another pod takes the run over."
        ),
        Kind(
            name: "job-batch-set-aside", severity: "page",
            summary: "A job batch killed several pods in a row and was set aside (failed)."),
        Kind(
            name: "job-started-before-dependency", severity: "ticket",
            summary: "A job waited for the job it depends on and went on without it."),
        Kind(
            name: "ka-deadline-risk", severity: "page",
            summary: "A key-account pre-warm will not be done before its stream starts."),
        Kind(
            name: "ka-lease-lost", severity: "ticket",
            summary: "A ka-prewarmer pod lost a live's lease; another pod goes on from the checkpoint."),
        Kind(
            name: "ka-verification-failed", severity: "page",
            summary: "Sampled keys of a pre-warmed live were missing after its pre-warm."),
        Kind(
            name: "ka-cache-lost", severity: "ticket",
            summary: "A live was pre-warmed but Redis lost its keys; it is being pre-warmed again."),
        Kind(
            name: "ka-duplicate-reservation", severity: "ticket",
            summary: "A reservation for a live that is already queued, running or done was skipped."),
        Kind(
            name: "activity-rebuilt", severity: "ticket",
            summary: "Redis had lost store-entry activity; the days were rebuilt from the PostgreSQL log."),
        Kind(
            name: "book-rec-prewarm-failures", severity: "page",
            summary: "The book-rec pre-warm failed for more users than its threshold."),
        Kind(
            name: "book-rec-push-misses", severity: "ticket",
            summary:
                "An hour's push found no pre-warmed recommendation for more users than PREWARM_PUSH_MISS_ALERT_RATIO."),
        Kind(
            name: "book-rec-push-unsent", severity: "page",
            summary: "Rows of an hour's push were not pushed by the end of its send window."),
    ]
}
