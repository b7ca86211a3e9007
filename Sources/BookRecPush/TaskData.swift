import Foundation
import Postgres
import PrewarmRuntime

/// One `task_data` row as the push needs it, checked.
public struct TaskDataRow: Sendable, Equatable {
    public let id: Int64
    public let task: String
    public let user: Int64
    public let project: String
    public let hour: Int
    /// The row's payload: a JSON object, passed on in the push untouched.
    public let payload: String
}

/// A row that cannot be used, and why (logged and counted, never fatal).
public struct MalformedRow: Error, Sendable, Equatable, CustomStringConvertible {
    public let id: Int64
    public let reason: String
    public var description: String { "task_data row \(id): \(reason)" }
}

/// What the jobs read from `task_data`: always by keyset pages or by the ids of one batch,
/// never a whole day at once (the seed's worry about the source database at midnight).
public struct TaskData: Sendable {
    public let pool: PostgresPool
    public let options: BookRecOptions

    public init(pool: PostgresPool, options: BookRecOptions) {
        self.pool = pool
        self.options = options
    }

    /// The rows with these ids, checked: the usable ones and the malformed ones.
    public func rows(_ ids: [Int64]) async throws -> (rows: [TaskDataRow], malformed: [MalformedRow]) {
        guard !ids.isEmpty else { return ([], []) }
        return try await checked("WHERE id = ANY($1::bigint[]) ORDER BY id", [ids])
    }

    /// The rows a condition selects (`where` binds the parameters), checked.
    private func checked(_ where: String, _ parameters: [(any PostgresEncodable)?]) async throws -> (
        rows: [TaskDataRow], malformed: [MalformedRow]
    ) {
        let result = try await pool.withConnection {
            try await $0.query(
                "SELECT id, task_id, source_uid, project, push_hour, payload FROM task_data " + `where`, parameters)
        }
        var rows: [TaskDataRow] = []
        var malformed: [MalformedRow] = []
        for row in result.rows {
            let id = row[0].int64 ?? 0
            switch Self.check(
                id: id, task: row[1].string, user: row[2].int64, project: row[3].string, hour: row[4].int,
                payload: row[5].string)
            {
            case .success(let checked): rows.append(checked)
            case .failure(let problem): malformed.append(problem)
            }
        }
        return (rows, malformed)
    }

    /// Empty or only white space (a byte look first: a name starting with a letter is not).
    private static func isBlank(_ text: String) -> Bool {
        guard let first = text.utf8.first else { return true }
        if first > 0x20, first < 0x80 { return false }
        return text.trimmingCharacters(in: .whitespaces).isEmpty
    }

    static func check(id: Int64, task: String?, user: Int64?, project: String?, hour: Int?, payload: String?)
        -> Result<TaskDataRow, MalformedRow>
    {
        guard let user, user > 0 else {
            return .failure(MalformedRow(id: id, reason: "source_uid is missing or not positive"))
        }
        guard let project, !isBlank(project) else {
            return .failure(MalformedRow(id: id, reason: "project is missing"))
        }
        guard let hour, (0..<24).contains(hour) else {
            return .failure(
                MalformedRow(id: id, reason: "push_hour \(hour.map(String.init) ?? "is missing"), not 0-23"))
        }
        let text = payload ?? "{}"
        guard (try? JSONSerialization.jsonObject(with: Data(text.utf8))) is [String: Any] else {
            return .failure(MalformedRow(id: id, reason: "payload is not a JSON object"))
        }
        return .success(TaskDataRow(id: id, task: task ?? "", user: user, project: project, hour: hour, payload: text))
    }

    /// The first usable row of each of these users among the day's tasks (the finished
    /// series' first), and the malformed rows met on the way: one statement.
    public func users(_ users: [Int64], day: String) async throws -> (rows: [TaskDataRow], malformed: [MalformedRow]) {
        guard !users.isEmpty else { return ([], []) }
        let checked = try await checked(
            """
            WHERE task_id = ANY($1::text[]) AND source_uid = ANY($2::bigint[])
            ORDER BY source_uid, array_position($1::text[], task_id), id
            """, [options.tasks(day: day).postgresArray, users])
        var seen = Set<Int64>()
        return (checked.rows.filter { seen.insert($0.user).inserted }, checked.malformed)
    }
}

/// The pre-warm's targets: the distinct users of the day's two tasks, by user id.
public struct PrewarmTargets: FanOutSource {
    public let data: TaskData

    public init(data: TaskData) { self.data = data }

    public func count(for run: JobRunInfo) async throws -> Int? {
        let tasks = data.options.tasks(day: String(run.period.prefix(8)))
        let rows = try await data.pool.withConnection {
            try await $0.integers(
                "SELECT count(DISTINCT source_uid) FROM task_data WHERE task_id = ANY($1::text[]) AND source_uid > 0",
                [tasks.postgresArray])
        }
        return rows.count > 0 ? Int(rows[0, 0]) : nil
    }

    public func page(for run: JobRunInfo, after cursor: Int64, limit: Int) async throws -> [Int64] {
        let tasks = data.options.tasks(day: String(run.period.prefix(8)))
        let rows = try await data.pool.withConnection {
            try await $0.integers(
                """
                SELECT DISTINCT source_uid FROM task_data
                WHERE task_id = ANY($1::text[]) AND source_uid > $2 AND source_uid > 0
                ORDER BY source_uid LIMIT $3
                """, [tasks.postgresArray, max(cursor, 0), limit])
        }
        return (0..<rows.count).map { rows[$0, 0] }
    }
}

/// An hour's targets: the rows of the day's two tasks whose push hour is the run's hour, by
/// row id (a user in both tasks has two rows; the push's claim lets one through).
public struct HourTargets: FanOutSource {
    public let data: TaskData

    public init(data: TaskData) { self.data = data }

    static func dayAndHour(_ period: String) -> (day: String, hour: Int) {
        (String(period.prefix(8)), Int(period.dropFirst(8).prefix(2)) ?? -1)
    }

    public func count(for run: JobRunInfo) async throws -> Int? {
        let (day, hour) = Self.dayAndHour(run.period)
        let rows = try await data.pool.withConnection {
            try await $0.integers(
                "SELECT count(*) FROM task_data WHERE task_id = ANY($1::text[]) AND push_hour = $2",
                [data.options.tasks(day: day).postgresArray, hour])
        }
        return rows.count > 0 ? Int(rows[0, 0]) : nil
    }

    public func page(for run: JobRunInfo, after cursor: Int64, limit: Int) async throws -> [Int64] {
        let (day, hour) = Self.dayAndHour(run.period)
        let rows = try await data.pool.withConnection {
            try await $0.integers(
                """
                SELECT id FROM task_data WHERE task_id = ANY($1::text[]) AND push_hour = $2 AND id > $3
                ORDER BY id LIMIT $4
                """, [data.options.tasks(day: day).postgresArray, hour, cursor, limit])
        }
        return (0..<rows.count).map { rows[$0, 0] }
    }
}
