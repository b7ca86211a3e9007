import PrewarmRuntime

/// The push targets (owned upstream, like the seed's `task_data`; these migrations create it
/// for the demo, the tests and a fresh deployment). Versions 400-499 belong to push-producer.
///
/// Columns other than the id and task are nullable on purpose: the table is filled by
/// another system, and a row without a user, a project or a valid hour is skipped with a
/// logged reason rather than stopping a run.
public enum BookRecPushSchema {
    public static let migrations: [Migration] = [
        Migration(
            version: 400, name: "push-producer: task_data, the users to push per task and hour",
            statements: [
                """
                CREATE TABLE task_data (
                    id bigserial PRIMARY KEY,
                    task_id text NOT NULL,
                    source_uid bigint,
                    project text,
                    push_hour smallint,
                    payload text NOT NULL DEFAULT '{}',
                    created_at timestamptz NOT NULL DEFAULT now())
                """,
                "CREATE INDEX task_data_task_user ON task_data (task_id, source_uid)",
                "CREATE INDEX task_data_task_hour ON task_data (task_id, push_hour, id)",
            ])
    ]
}
