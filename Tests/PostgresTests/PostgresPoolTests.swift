import Foundation
import Postgres
import Synchronization
import TestSupport
import Testing

/// Records what happened, in order, from concurrent tasks.
actor Events {
    var list: [String] = []
    func add(_ event: String) { list.append(event) }
}

@Suite("PostgreSQL connection pool")
struct PostgresPoolTests {
    @Test("beyond its maximum a caller waits for a connection to come back, then gets it")
    func waitsForAConnection() async throws {
        let pool = PostgresPool(try TestEnvironment.postgres(), maximum: 1)
        let events = Events()
        async let first: Int = pool.withConnection { db in
            await events.add("first in")
            try await db.query("SELECT pg_sleep(0.2)")
            await events.add("first out")
            return try await db.query("SELECT pg_backend_pid()").first![0].int!
        }
        try await Task.sleep(for: .milliseconds(50))
        async let second: Int = pool.withConnection { db in
            await events.add("second in")
            return try await db.query("SELECT pg_backend_pid()").first![0].int!
        }
        let (a, b) = try await (first, second)
        #expect(a == b, "the same connection, reused")
        #expect(await events.list == ["first in", "first out", "second in"])
        await pool.close()
    }

    @Test("a failed connect wakes a waiting caller, which tries in its turn: nobody hangs", .timeLimit(.minutes(1)))
    func failedConnectWakesWaiters() async throws {
        let unreachable = PostgresConfiguration(
            conninfo: "host=127.0.0.1 port=1 dbname=prewarm user=prewarm", password: "x", connectTimeout: 1)
        let pool = PostgresPool(unreachable, maximum: 1)
        let results = try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<3 {
                group.addTask {
                    do {
                        _ = try await pool.withConnection { try await $0.query("SELECT 1") }
                        return false
                    } catch let error as PostgresError {
                        return error.code == .connectionFailed
                    }
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results == [true, true, true], "each caller got the connect error")
    }

    @Test("closing the pool fails the callers still waiting", .timeLimit(.minutes(1)))
    func closeFailsWaiters() async throws {
        let pool = PostgresPool(try TestEnvironment.postgres(), maximum: 1)
        let holding = Atomic<Bool>(false)
        let holder = Task {
            try await pool.withConnection {
                holding.store(true, ordering: .sequentiallyConsistent)
                return try await $0.query("SELECT pg_sleep(1)")
            }
        }
        // The one connection held (the holder's task may start after the waiter's otherwise).
        try await eventually(timeout: .seconds(10), "the holder to have the connection") {
            holding.load(ordering: .sequentiallyConsistent)
        }
        let waiter = Task { try await pool.withConnection { try await $0.query("SELECT 1") } }
        try await Task.sleep(for: .milliseconds(200))
        await pool.close()
        await #expect(throws: PostgresError.self) { try await waiter.value }
        _ = try await holder.value
        await #expect(throws: PostgresError.self) { try await pool.withConnection { try await $0.query("SELECT 1") } }
    }
}
