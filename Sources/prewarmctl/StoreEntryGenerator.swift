import EntryIngest
import Foundation
import Postgres
import PrewarmRuntime

/// A campus canteen's month: a few thousand students, a few hundred stores, visits around
/// meal times, students loyal to a handful of stores, some of them nearly every day, and a
/// few late uploads from phones that were offline for weeks. Deterministic for a seed, apart
/// from the event ids, which are fresh UUIDs each run as upstream's would be.
struct StoreEntryGenerator {
    var random: SplitMix64
    let timeZone: TimeZone

    init(seed: UInt64, timeZone: TimeZone) {
        random = SplitMix64(seed: seed)
        self.timeZone = timeZone
    }

    mutating func events(count: Int, now: Date, users: Int64 = 2000, stores: Int64 = 300) -> [StoreEntryEvent] {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let today = calendar.startOfDay(for: now)
        let mealHours = [7.5, 12.0, 18.0, 21.5]
        return (0..<count).map { _ in
            // A fifth of the students are regulars, who account for half the visits.
            let regular = random.next() % 2 == 0
            let user =
                regular ? Int64(random.next() % UInt64(users / 5)) * 5 + 5 : Int64(random.next() % UInt64(users)) + 1
            // Each user favours stores near "their" store id: skewed, like real loyalty.
            let spread = Int64(random.next() % 20) - 10
            let store = (user % stores + spread + stores) % stores + 1
            // Mostly the last three weeks; 3 % are late uploads from 5 to 9 weeks ago.
            let daysAgo = random.next() % 100 < 3 ? 35 + Int(random.next() % 28) : Int(random.next() % 21)
            let hour = mealHours[Int(random.next() % 4)] + Double(random.next() % 60) / 60 - 0.5
            let day = calendar.date(byAdding: .day, value: -daysAgo, to: today)!
            let at = min(day.addingTimeInterval(hour * 3600), now.addingTimeInterval(-60))
            return StoreEntryEvent(
                eventID: UUID(), userID: user, storeID: store, enteredAt: at)
        }
    }

    /// One event of each kind a real stream carries now and then, with the class the
    /// worker dead-letters it under.
    static func badMessages(now: Date) -> [(key: String, json: String, errorClass: String)] {
        let id = { UUID().uuidString.lowercased() }
        let yesterday = RFC3339.format(now.addingTimeInterval(-86_400))
        return [
            (
                "17", #"{"event_id":"\#(id())","user_id":17,"store_id":9999,"entered_at":"\#(yesterday)"}"#,
                "UnknownStore"
            ),
            (
                "18", #"{"event_id":"\#(id())","user_id":18,"store_id":3,"entered_at":"2031-01-01T00:00:00Z"}"#,
                "FutureTimestamp"
            ),
            ("19", #"{"event_id":"\#(id())","user_id":19,"entered_at":"\#(yesterday)"}"#, "MissingField"),
            ("20", #"{"event_id":"\#(id())","user_id":20,"store_id":3,"entered_at":"last tuesday"}"#, "BadTimestamp"),
        ]
    }
}
