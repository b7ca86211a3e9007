/// The runtime's own tables: durable tasks, the retry table beside them, and dead letters too
/// large for their DLQ topic. Versions 1-99 are the runtime's; products number theirs from 100.
public enum RuntimeSchema {
    public static let tasksTable = "prewarm_tasks"
    public static let retryTable = "prewarm_retry"
    public static let deadLettersTable = "prewarm_dead_letters"

    public static let migrations: [Migration] = [
        Migration(
            version: 1, name: "runtime: durable tasks",
            statements: [
                """
                CREATE TABLE prewarm_tasks (
                    id bigserial PRIMARY KEY,
                    kind text NOT NULL,
                    key text NOT NULL,
                    state text NOT NULL DEFAULT 'queued'
                        CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
                    payload jsonb NOT NULL DEFAULT '{}',
                    cursor text,
                    done bigint NOT NULL DEFAULT 0,
                    total bigint,
                    rate double precision,
                    deadline timestamptz,
                    due_at timestamptz NOT NULL DEFAULT now(),
                    attempts integer NOT NULL DEFAULT 0,
                    max_attempts integer NOT NULL DEFAULT 5 CHECK (max_attempts > 0),
                    last_error text,
                    owner text,
                    heartbeat_at timestamptz,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    started_at timestamptz,
                    finished_at timestamptz,
                    updated_at timestamptz NOT NULL DEFAULT now(),
                    UNIQUE (kind, key))
                """,
                // Claims: earliest deadline first among the due.
                "CREATE INDEX prewarm_tasks_queued ON prewarm_tasks (kind, deadline, id) WHERE state = 'queued'",
                // Rescue: running tasks by heartbeat age.
                "CREATE INDEX prewarm_tasks_running ON prewarm_tasks (heartbeat_at) WHERE state = 'running'",
                // The pruner: finished tasks by age.
                """
                CREATE INDEX prewarm_tasks_finished ON prewarm_tasks (state, finished_at)
                    WHERE state IN ('succeeded', 'failed', 'cancelled')
                """,
            ]),
        Migration(
            version: 2, name: "runtime: retry table",
            statements: [
                """
                CREATE TABLE prewarm_retry (
                    id bigserial PRIMARY KEY,
                    kind text NOT NULL,
                    task_id bigint REFERENCES prewarm_tasks (id) ON DELETE CASCADE,
                    item jsonb NOT NULL,
                    state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'exhausted')),
                    attempts integer NOT NULL DEFAULT 0,
                    max_attempts integer NOT NULL CHECK (max_attempts > 0),
                    next_attempt_at timestamptz NOT NULL DEFAULT now(),
                    last_error text,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    updated_at timestamptz NOT NULL DEFAULT now())
                """,
                "CREATE INDEX prewarm_retry_due ON prewarm_retry (kind, next_attempt_at) WHERE state = 'pending'",
                "CREATE INDEX prewarm_retry_task ON prewarm_retry (task_id)",
            ]),
        Migration(
            version: 3, name: "runtime: dead letters kept whole",
            statements: [
                // One row per message and group: a message dead-lettered again (a replay) keeps
                // its row. Key, value and header values are bytes, kept as they came.
                """
                CREATE TABLE prewarm_dead_letters (
                    id bigserial PRIMARY KEY,
                    topic text NOT NULL,
                    partition integer NOT NULL,
                    "offset" bigint NOT NULL,
                    consumer_group text NOT NULL,
                    key bytea,
                    value bytea NOT NULL,
                    header_names text[] NOT NULL DEFAULT '{}',
                    header_values text[] NOT NULL DEFAULT '{}',
                    timestamp_ms bigint,
                    error_class text NOT NULL,
                    error_message text NOT NULL,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    UNIQUE (topic, partition, "offset", consumer_group))
                """
            ]),
    ]
}
