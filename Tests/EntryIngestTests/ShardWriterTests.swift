import EntryIngest
import Foundation
import Postgres
import TestSupport
import Testing

@Suite("Entry rows into the 16 shards")
struct ShardWriterTests {
    @Test("new events are stored once each, in their user's shard; replays and in-batch duplicates add nothing")
    func storedOnce() async throws {
        let db = try await IngestDatabase.make()
        let writer = ShardWriter(database: db.connection)
        let store = Store(id: 3, categoryID: 2, zoneID: 1)
        func batch(_ count: Int, from user: Int64) -> [(event: StoreEntryEvent, store: Store)] {
            (0..<count).map { index in
                (
                    StoreEntryEvent(
                        eventID: UUID(), userID: user + Int64(index), storeID: 3,
                        enteredAt: Date().addingTimeInterval(-Double(index) * 60)), store
                )
            }
        }
        let first = batch(100, from: 1)
        #expect(try await writer.write(first) == 100)
        #expect(try await writer.write(first) == 0, "a replayed batch")
        let second = batch(50, from: 1000)
        #expect(try await writer.write(second + Array(first.prefix(10))) == 50, "half replayed, half new")
        let third = batch(20, from: 5000)
        #expect(try await writer.write(third + [third[0]]) == 20, "the same event twice in a batch")
        #expect(try await db.shardRows() == 170)
        #expect(try await db.eventCounts().values.allSatisfy { $0 == 1 })
        let misplaced = try await db.connection.query(
            "SELECT count(*) FROM store_entry_log_05 WHERE user_id % 16 <> 5 OR category_id <> 2 OR zone_id <> 1")
        #expect(misplaced.first?[0].int == 0)
        await db.drop()
    }

    @Test("copied over two connections, when one half meets stored events: the other half stays, each stored once")
    func halfConflicts() async throws {
        let db = try await IngestDatabase.make()
        let pool = PostgresPool(db.configuration, maximum: 2)
        let writer = ShardWriter(pool: pool, copyConnections: 2)
        let store = Store(id: 3, categoryID: 2, zoneID: 1)
        func events(users: [Int64]) -> [(event: StoreEntryEvent, store: Store)] {
            users.map { user in
                (
                    StoreEntryEvent(
                        eventID: UUID(), userID: user, storeID: 3,
                        enteredAt: Date().addingTimeInterval(-600)), store
                )
            }
        }
        // User 16k + s lands in shard s: even shards go over one connection, odd over the other.
        func users(_ count: Int, from base: Int64, odd: Bool) -> [Int64] {
            (0..<Int64(count)).map { index -> Int64 in
                let shard: Int64 = 2 * (index % 8) + (odd ? 1 : 0)
                return (base + index) * 16 + shard
            }
        }
        let storedEven = events(users: users(40, from: 0, odd: false))
        #expect(try await writer.write(storedEven) == 40)
        let newEven = events(users: users(30, from: 1000, odd: false))
        let newOdd = events(users: users(30, from: 2000, odd: true))
        #expect(try await writer.write(storedEven + newEven + newOdd) == 60, "exactly the new ones counted")
        #expect(try await db.shardRows() == 100)
        #expect(try await db.eventCounts().values.allSatisfy { $0 == 1 })
        await pool.close()
        await db.drop()
    }
}
