import Postgres
import TestSupport
import Testing

@Suite("PostgreSQL connection against the local server", .closesResources)
struct PostgresConnectionTests {
    private func connect() async throws -> PostgresConnection {
        try await PostgresConnection.connect(try TestEnvironment.postgres())
    }

    @Test("a silent server is found within a minute (keepalives, tcp_user_timeout); the URL's own values win")
    func tcpDefaults() async throws {
        let db = try await connect()
        closeAfterTest { await db.close() }
        #expect(try await db.parameter("keepalives_idle") == "30")
        #expect(try await db.parameter("keepalives_count") == "3")
        #expect(try await db.parameter("tcp_user_timeout") == "60000")
        var configuration = try TestEnvironment.postgres()
        configuration.conninfo += " keepalives_idle=45 tcp_user_timeout=0"
        let own = try await PostgresConnection.connect(configuration)
        closeAfterTest { await own.close() }
        #expect(try await own.parameter("keepalives_idle") == "45")
        #expect(try await own.parameter("tcp_user_timeout") == "0")
        #expect(try await own.parameter("keepalives_interval") == "10")
    }

    @Test("integers read as integers at both ends of bigint: Int64.min, Int64.max, zero and a negative")
    func integerExtremes() async throws {
        let db = try await connect()
        closeAfterTest { await db.close() }
        let values: [Int64] = [.min, .max, 0, -1021, .min + 1]
        let sql = "SELECT v FROM unnest($1::bigint[]) WITH ORDINALITY AS t(v, n) ORDER BY n"
        let integers = try await db.integers(sql, [values])
        #expect((0..<integers.count).map { integers[$0, 0] } == values)
        let texts = try await db.texts(sql, [values])
        #expect((0..<texts.count).map { texts.integer(row: $0, column: 0) } == values)
    }

    @Test("rows cut out of a result read as the same rows: first, middle, last, empty (KA splits its reads so)")
    func textRows() async throws {
        let db = try await connect()
        closeAfterTest { await db.close() }
        let texts = try await db.texts(
            "SELECT n, repeat('x', n::int) || '✓', NULL FROM generate_series(1, 7) n ORDER BY n", [])
        let row = { (texts: PostgresTexts, index: Int) in
            (0..<3).map { texts.string(row: index, column: $0) }
        }
        for range in [0..<3, 2..<5, 5..<7, 0..<7, 4..<4] {
            let cut = texts.rows(range)
            #expect(cut.count == range.count && cut.columns == 3)
            #expect((0..<cut.count).map { row(cut, $0) } == range.map { row(texts, $0) }, "rows \(range)")
        }
        #expect(texts.rows(5..<7).integer(row: 1, column: 0) == 7)
    }

    @Test("COPY of 100k rows stores every row, with tabs, newlines, backslashes and NULLs intact")
    func copyHundredThousandRows() async throws {
        let db = try await connect()
        closeAfterTest { await db.close() }
        let table = TestEnvironment.uniqueName("copy")
        try await db.query("CREATE TABLE \(table) (id bigint PRIMARY KEY, note text, at timestamptz)")
        var rows = PostgresCopyRows()
        for id in 0..<100_000 {
            rows.append([id, id % 1000 == 0 ? nil : "note \(id)\twith\\tab\nand line", "2026-11-21T10:00:00+08:00"])
        }
        #expect(try await db.copy(into: table, columns: ["id", "note", "at"], rows: rows) == 100_000)
        let summary = try #require(
            try await db.query("SELECT count(*), count(note), max(id) FROM \(table)").first)
        #expect(summary[0].int == 100_000)
        #expect(summary[1].int == 99_900)
        #expect(summary[2].int == 99_999)
        let sample = try await db.query("SELECT note FROM \(table) WHERE id = $1", [4242])
        #expect(sample.first?["note"].string == "note 4242\twith\\tab\nand line")
        try await db.query("DROP TABLE \(table)")
    }

    @Test("binary COPY stores every type exactly: bigint, integer, smallint, uuid, text, NULL, microsecond times")
    func binaryCopy() async throws {
        let db = try await connect()
        closeAfterTest { await db.close() }
        let table = TestEnvironment.uniqueName("bincopy")
        try await db.query(
            "CREATE TABLE \(table) (id bigint PRIMARY KEY, small smallint, medium integer, event uuid, note text, at timestamptz)"
        )
        let base = try #require(RFC3339.parse("1999-12-31T23:59:59.999999Z"))  // before PostgreSQL's epoch
        var rows = PostgresBinaryCopyRows()
        for id in 0..<10_000 {
            rows.startRow(fields: 6)
            rows.append(Int64(id) - 5_000)
            rows.append(Int16(truncatingIfNeeded: id))
            rows.append(Int32(id) * -70_000)
            try rows.append(
                uuid: id % 2 == 0 ? "0f1E2d3c-4b5a-6978-8796-a5b4c3d2e1f0" : "00000000-0000-0000-0000-0000000000ff")
            if id % 100 == 0 { rows.appendNull() } else { rows.append("note \(id)\twith\\tab\nand é") }
            rows.append(base.addingTimeInterval(Double(id) * 86_400.000_001))
        }
        #expect(rows.count == 10_000)
        #expect(
            try await db.copy(into: table, columns: ["id", "small", "medium", "event", "note", "at"], rows: rows)
                == 10_000)
        let row = try #require(
            try await db.query(
                "SELECT small, medium, event::text, note, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') FROM \(table) WHERE id = $1",
                [Int64(4242 - 5_000)]
            ).first)
        #expect(row[0].int == 4242)
        #expect(row[1].int == 4242 * -70_000)
        #expect(row[2].string == "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
        #expect(row[3].string == "note 4242\twith\\tab\nand é")
        // 4242 days and 4242 µs after the base, exactly.
        #expect(row[4].string == "2011-08-13 00:00:00.004241")
        let summary = try #require(
            try await db.query("SELECT count(note), min(id), count(DISTINCT event) FROM \(table)").first)
        #expect(summary[0].int == 9_900)
        #expect(summary[1].int == -5_000)
        #expect(summary[2].int == 2)
        try await db.query("DROP TABLE \(table)")
    }

    @Test("binary COPY refuses a malformed UUID before sending anything")
    func binaryCopyBadUUID() throws {
        var rows = PostgresBinaryCopyRows()
        rows.startRow(fields: 1)
        for text in [
            "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f", "0f1e2d3c4b5a-6978-8796-a5b4c3d2e1f0a",
            "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1fg",
        ] {
            let error = #expect(throws: PostgresError.self) { try rows.append(uuid: text) }
            #expect(error?.code == .invalidValue)
            #expect(error?.isTransient == false)
        }
    }

    @Test("a duplicate key is a unique violation with its SQLSTATE and constraint, not an outage")
    func uniqueViolation() async throws {
        let db = try await connect()
        closeAfterTest { await db.close() }
        let table = TestEnvironment.uniqueName("uniq")
        try await db.query("CREATE TABLE \(table) (event_id text CONSTRAINT \(table)_event UNIQUE)")
        try await db.query("INSERT INTO \(table) VALUES ($1)", ["e-1"])
        let error = await #expect(throws: PostgresError.self) {
            try await db.query("INSERT INTO \(table) VALUES ($1)", ["e-1"])
        }
        #expect(error?.isUniqueViolation == true)
        #expect(error?.sqlState == "23505")
        #expect(error?.constraint == "\(table)_event")
        #expect(error?.isTransient == false)
        // The connection is still usable after a statement error.
        #expect(try await db.query("SELECT count(*) FROM \(table)").first?[0].int == 1)
        try await db.query("DROP TABLE \(table)")
    }

    @Test("parameters are bound, never spliced: a quote-laden value is stored as written")
    func parameters() async throws {
        let db = try await connect()
        closeAfterTest { await db.close() }
        let hostile = "x'); DROP TABLE users; --"
        let row = try #require(
            try await db.query("SELECT $1::text AS v, $2::bigint + 1 AS n, $3::text IS NULL AS z", [hostile, 41, nil])
                .first)
        #expect(row["v"].string == hostile)
        #expect(row["n"].int == 42)
        #expect(row["z"].bool == true)
    }

    @Test("a transaction that throws leaves nothing behind; one that returns is committed")
    func transactions() async throws {
        let db = try await connect()
        closeAfterTest { await db.close() }
        let table = TestEnvironment.uniqueName("tx")
        try await db.query("CREATE TABLE \(table) (id int)")
        struct Abort: Error {}
        await #expect(throws: Abort.self) {
            try await db.transaction { tx in
                try await tx.query("INSERT INTO \(table) VALUES (1)")
                throw Abort()
            }
        }
        _ = try await db.transaction { tx in try await tx.query("INSERT INTO \(table) VALUES (2)") }
        let ids = try await db.query("SELECT id FROM \(table) ORDER BY id").rows.map { $0[0].int }
        #expect(ids == [2])
        try await db.query("DROP TABLE \(table)")
    }

    @Test("keyset iteration visits every row once, in key order, in batches of the given size")
    func keysetIteration() async throws {
        let db = try await connect()
        closeAfterTest { await db.close() }
        let table = TestEnvironment.uniqueName("keyset")
        try await db.query("CREATE TABLE \(table) (user_id bigint PRIMARY KEY, shop int)")
        try await db.query("INSERT INTO \(table) SELECT g * 3, g % 2 FROM generate_series(1, 1234) g")
        var seen: [Int64] = []
        var batchSizes: [Int] = []
        let total = try await db.forEachKeysetBatch(
            "SELECT user_id FROM \(table) WHERE user_id > $1 AND shop = $3 ORDER BY user_id LIMIT $2",
            after: Int64(0), batchSize: 100, parameters: [1],
            key: { try #require($0["user_id"].int64) }
        ) { batch in
            batchSizes.append(batch.count)
            seen += batch.rows.compactMap { $0["user_id"].int64 }
        }
        let expected = (1...1234).filter { $0 % 2 == 1 }.map { Int64($0 * 3) }
        #expect(total == expected.count)
        #expect(seen == expected)
        #expect(batchSizes.dropLast().allSatisfy { $0 == 100 })
        try await db.query("DROP TABLE \(table)")
    }

    @Test("a wrong password is a clear, permanent error that does not repeat the password")
    func wrongPassword() async throws {
        let error = await #expect(throws: PostgresError.self) {
            _ = try await PostgresConnection.connect(try TestEnvironment.postgres(password: "wrong-pw-987"))
        }
        #expect(error?.code == .connectionFailed)
        #expect(error?.message.contains("password authentication failed") == true)
        #expect(error?.isTransient == false)
        #expect(error?.description.contains("wrong-pw-987") == false)
    }

    @Test("a bad conninfo is refused before connecting, without echoing it")
    func badConninfo() async throws {
        let configuration = PostgresConfiguration(conninfo: "host=localhost password=s3cret nonsense")
        let error = await #expect(throws: PostgresError.self) {
            _ = try await PostgresConnection.connect(configuration)
        }
        #expect(error?.description.contains("s3cret") == false)
        #expect(!configuration.description.contains("s3cret"))
        #expect(PostgresConfiguration(conninfo: "host=db password=s3cret").description.contains("password=***"))
    }

    @Test("a connection killed by the server fails once as transient, then reconnects")
    func connectionLostRecovered() async throws {
        let db = try await connect()
        closeAfterTest { await db.close() }
        let admin = try await connect()
        closeAfterTest { await admin.close() }
        let pid = try #require(try await db.query("SELECT pg_backend_pid()").first?[0].int)
        #expect(try await admin.query("SELECT pg_terminate_backend($1)", [pid]).first?[0].bool == true)
        let error = await #expect(throws: PostgresError.self) { try await db.query("SELECT 1") }
        #expect(error?.isTransient == true)
        let newPid = try await db.query("SELECT pg_backend_pid()").first?[0].int
        #expect(newPid != nil && newPid != pid)
    }
}
