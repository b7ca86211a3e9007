import Foundation
import KAPrewarm
import PrewarmRuntime
import Redis
import TestSupport
import Testing

@Suite("Reservations into pre-warm tasks", .closesResources)
struct KAPrewarmQueueTests {
    @Test("an unknown shop is refused and a shop below the minimum is skipped; neither makes a task")
    func unknownAndSmall() async throws {
        let harness = try await KAHarness.make(.testing(minUsers: 100))
        let small = uniqueID()
        try await harness.db.addShop(small, users: 99)
        let unknownLive = uniqueID()
        let smallLive = uniqueID()
        let outcomes = try await harness.queue.enqueue([
            reservation(live: unknownLive, shop: uniqueID()), reservation(live: smallLive, shop: small),
        ])
        #expect(outcomes == [.unknownShop, .skipped(users: 99)])
        #expect(try await harness.state(live: unknownLive) == nil)
        #expect(try await harness.state(live: smallLive) == nil)
    }

    @Test(
        "the same reservation twice: one task, the second skipped and alerted; a person's second ask is answered, not alerted"
    )
    func duplicate() async throws {
        let harness = try await KAHarness.make(.testing())
        let shop = uniqueID()
        let live = uniqueID()
        try await harness.db.addShop(shop, users: 120)
        let first = try await harness.queue.enqueue(reservation(live: live, shop: shop))
        guard case .queued(let task) = first else {
            Issue.record("first reservation not queued: \(first)")
            return
        }
        #expect(task.total == 120 && task.state == .queued)
        #expect(task.deadline != nil)
        // From the topic (upstream booked it twice): alerted.
        let second = try await harness.queue.enqueue([reservation(live: live, shop: shop)])[0]
        guard case .duplicate(let existing, let reason) = second else {
            Issue.record("second reservation not a duplicate: \(second)")
            return
        }
        #expect(existing?.id == task.id)
        #expect(reason.contains("already queued"))
        #expect(try await harness.db.scalar("SELECT count(*) FROM prewarm_tasks") == 1)
        try await eventually("the duplicate alert") {
            try await harness.alerts("ka-duplicate-reservation", live: live).count == 1
        }
        // An operator clicking the trigger twice gets a 409 (a duplicate), and no alert.
        guard case .duplicate = try await harness.queue.enqueue(reservation(live: live, shop: shop)) else {
            Issue.record("a person's second ask was not a duplicate")
            return
        }
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await harness.alerts("ka-duplicate-reservation", live: live).count == 1, "no second alert")
    }

    @Test("the message that queued a pre-warm, delivered again (a replay), is skipped without the duplicate alert")
    func redelivered() async throws {
        let harness = try await KAHarness.make(.testing())
        let shop = uniqueID()
        let live = uniqueID()
        try await harness.db.addShop(shop, users: 80)
        let message = "live.reservation.v1[0]@\(live)"
        guard
            case .queued(let task) = try await harness.queue.enqueue(
                [reservation(live: live, shop: shop)], sources: [message])[0]
        else {
            Issue.record("the reservation was not queued")
            return
        }
        let again = try await harness.queue.enqueue([reservation(live: live, shop: shop)], sources: [message])[0]
        guard case .duplicate(let existing, _) = again else {
            Issue.record("the message delivered again was queued again: \(again)")
            return
        }
        #expect(existing?.id == task.id)
        // The same reservation in another message is a duplicate reservation: alerted, once.
        _ = try await harness.queue.enqueue(
            [reservation(live: live, shop: shop)], sources: ["live.reservation.v1[0]@\(live + 1)"])
        try await eventually("the duplicate alert") {
            try await harness.alerts("ka-duplicate-reservation", live: live).count == 1
        }
        try await Task.sleep(for: .milliseconds(500))
        #expect(try await harness.alerts("ka-duplicate-reservation", live: live).count == 1, "the replay raised none")

        // A forcing message delivered again after its pre-warm ran does not run it a third time.
        harness.startRunner()
        try await harness.waitForState(.succeeded, live: live)
        let forcing = "live.reservation.v1[0]@\(live + 2)"
        guard
            case .queued = try await harness.queue.enqueue(
                [reservation(live: live, shop: shop, force: true)], sources: [forcing])[0]
        else {
            Issue.record("the forced reservation was not queued")
            return
        }
        try await harness.waitForState(.succeeded, live: live)
        let replayed = try await harness.queue.enqueue(
            [reservation(live: live, shop: shop, force: true)], sources: [forcing])[0]
        guard case .duplicate = replayed else {
            Issue.record("the forcing message delivered again queued the pre-warm again: \(replayed)")
            return
        }
        #expect(try await harness.state(live: live)?.state == .succeeded)
    }

    @Test("a pre-warmed live is a duplicate unless forced; forcing warms it again from the start")
    func forced() async throws {
        let harness = try await KAHarness.make(.testing())
        let shop = uniqueID()
        let live = uniqueID()
        try await harness.db.addShop(shop, users: 60)
        harness.startRunner()
        _ = try await harness.queue.enqueue(reservation(live: live, shop: shop))
        try await harness.waitForState(.succeeded, live: live)
        #expect(try await harness.redis.send("EXISTS", harness.cache.doneKey(live: live)) == .integer(1))

        guard case .duplicate(_, let reason) = try await harness.queue.enqueue(reservation(live: live, shop: shop))
        else {
            Issue.record("a reservation of a pre-warmed live was not a duplicate")
            return
        }
        #expect(reason.contains("already"))

        // Forced: queued again from scratch; the keys come back after they were lost.
        try await harness.redis.send(RedisCommand("DEL", arguments: try await harness.userKeys(shop: shop)))
        let forced = try await harness.queue.enqueue(reservation(live: live, shop: shop, force: true))
        guard case .queued(let task) = forced else {
            Issue.record("forced reservation not queued: \(forced)")
            return
        }
        #expect(task.done == 0 && task.cursor == nil)
        try await harness.waitForState(.succeeded, live: live)
        #expect(try await harness.userKeys(shop: shop).count == 60)
        #expect(try await harness.redis.send("EXISTS", harness.cache.doneKey(live: live)) == .integer(1))
    }

    @Test("forcing a live whose pre-warm is still queued changes nothing")
    func forcedWhileQueued() async throws {
        let harness = try await KAHarness.make(.testing())
        let shop = uniqueID()
        let live = uniqueID()
        try await harness.db.addShop(shop, users: 20)
        _ = try await harness.queue.enqueue(reservation(live: live, shop: shop))
        let forced = try await harness.queue.enqueue(reservation(live: live, shop: shop, force: true))
        guard case .duplicate(let task, let reason) = forced else {
            Issue.record("forcing a queued live was accepted: \(forced)")
            return
        }
        #expect(task?.state == .queued)
        #expect(reason.contains("force applies to a finished one"))
    }

    @Test("a task that cannot finish before its stream at the last measured rate alerts when queued")
    func predictedLateAtEnqueue() async throws {
        let harness = try await KAHarness.make(.testing(maxWriters: 2))
        let shop = uniqueID()
        let live = uniqueID()
        try await harness.db.addShop(shop, users: 500)
        // The last pre-warm managed 10 users/s per writer: 500 users take 25 s with 2 writers.
        try await harness.redis.send("SET", harness.cache.prefix + "prewarm:ka:rate", "10")
        let onTime = uniqueID()
        _ = try await harness.queue.enqueue(reservation(live: onTime, shop: shop, startsIn: 120))
        _ = try await harness.queue.enqueue(reservation(live: live, shop: shop, startsIn: 10))
        try await eventually("the deadline-risk alert") {
            try await harness.alerts("ka-deadline-risk", live: live).count == 1
        }
        // Alerts are delivered in order: one for the live in time would have come first.
        #expect(try await harness.alerts("ka-deadline-risk", live: onTime).isEmpty)
    }
}
