import EntryIngest
import Foundation
import Logging
import Postgres
import PrewarmConfiguration
import PrewarmRuntime
import Redis

/// `make bench scoring`'s data: `users` active users with `rows` store entries over the last
/// 30 days, written straight into the 16 shards by the server (one INSERT ... SELECT per
/// shard), and the same users' days in the day sets entry-ingest would have kept. Each user
/// is loyal to a dozen of the 2,000 stores and comes on ten of the 30 days.
struct ScoringWorkload {
    let users: Int
    let rows: Int
    let timeZone: TimeZone

    func write(postgres: PostgresConfiguration, redis: RedisConfiguration) async throws {
        let perUser = max(rows / users, 1)
        let pool = PostgresPool(postgres, maximum: 2)
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let today = calendar.startOfDay(for: Date())
        let first = calendar.date(byAdding: .day, value: -29, to: today)!
        do {
            _ = try await concurrentMap(Array(0..<EntryIngestSchema.shardCount), limit: 2) { shard in
                try await pool.withConnection { connection in
                    // Day (u + 3v) % 30 of the window: ten distinct days a user; a store among a dozen.
                    try await connection.query(
                        """
                        INSERT INTO \(EntryIngestSchema.shardTable(shard))
                            (event_id, user_id, store_id, category_id, zone_id, entered_at)
                        SELECT gen_random_uuid(), u, st, st % 40, st % 25,
                            $3::timestamptz + ((u + 3 * v) % 30) * interval '1 day' + (v % 14) * interval '1 hour'
                        FROM generate_series(1, $1::bigint) u,
                            LATERAL (SELECT v, 1 + ((u % 500) * 4 + (v % 12) * 37) % 2000 AS st
                                     FROM generate_series(0, $2::int - 1) v) visits
                        WHERE u % 16 = $4
                        """, [users, perUser, first, shard])
                    // As autovacuum would for an insert-only table: the visibility map lets the scorer read
                    // visits by index only.
                    try await connection.query("VACUUM (ANALYZE) \(EntryIngestSchema.shardTable(shard))")
                }
            }
        } catch {
            await pool.close()
            throw error
        }
        await pool.close()
        // The day sets: user u is seen on day d of the window when (d - u) % 3 == 0 and d is
        // one of the ten days its visits fall on.
        let connection = try await RedisConnection.connect(redis)
        do {
            var commands: [RedisCommand] = []
            for day in 0..<30 {
                let key = ActivityWriter.dayKey(
                    LocalDay.text(calendar.date(byAdding: .day, value: day, to: first)!, in: timeZone), prefix: "")
                var members: [any RedisArgument] = [key]
                for user in 1...Int64(users) where Self.visits(user: user, day: day, perUser: perUser) {
                    members.append(user)
                    if members.count > 5000 {
                        commands.append(RedisCommand("SADD", arguments: members))
                        members = [key]
                    }
                }
                if members.count > 1 { commands.append(RedisCommand("SADD", arguments: members)) }
            }
            _ = try await connection.pipeline(commands)
            // Written with the log: whole, as entry-ingest leaves it (no rebuild to time).
            try await ActivityGuard.markWhole(connection)
        } catch {
            await connection.close()
            throw error
        }
        await connection.close()
    }

    /// Whether some visit v of the user falls on day d: (u + 3v) % 30 == d for v < perUser.
    static func visits(user: Int64, day: Int, perUser: Int) -> Bool {
        (0..<min(perUser, 10)).contains { (Int(user % 30) + 3 * $0) % 30 == day }
    }
}

/// Waits until a job run's attempt has finished, polling its record every 20 ms.
struct RunWaiter {
    let redis: RedisConfiguration
    let job: String
    let period: String
    let attempt: Int

    /// Waits until the run's attempt has ended and its finish step settled its outcome
    /// (attempt 0: whatever attempt is there, and nothing when no run is: a catch-up waited
    /// out before a timed run).
    func wait(timeout: Duration = .seconds(1800)) async throws -> JobRunProgress? {
        let connection = try await RedisConnection.connect(redis)
        let runs = JobRuns(
            redis: connection, settings: JobRunSettings(), owner: "bench", logger: Logger(label: "bench"), alerts: nil)
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let progress = try await runs.progress(job: job, period: period)
            if attempt == 0, progress == nil {
                await connection.close()
                return nil
            }
            if let progress, attempt == 0 || progress.attempt == attempt, progress.isFinished,
                !progress.owesFinishStep
            {
                await connection.close()
                return progress
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        await connection.close()
        throw BenchFailure("run \(job) \(period) attempt \(attempt) did not finish in \(timeout)")
    }
}
