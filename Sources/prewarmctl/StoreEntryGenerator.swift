import Foundation

/// A store-entry behaviour event as `store.entry.v1` carries it.
struct StoreEntry: Codable, Equatable {
    var eventID: String
    var userID: Int64
    var storeID: Int64
    var enteredAt: String

    enum CodingKeys: String, CodingKey {
        case eventID = "event_id"
        case userID = "user_id"
        case storeID = "store_id"
        case enteredAt = "entered_at"
    }

    var json: String { String(decoding: try! JSONEncoder().encode(self), as: UTF8.self) }

    init(eventID: String, userID: Int64, storeID: Int64, enteredAt: String) {
        self.eventID = eventID
        self.userID = userID
        self.storeID = storeID
        self.enteredAt = enteredAt
    }

    init?(json: [UInt8]) {
        guard let decoded = try? JSONDecoder().decode(StoreEntry.self, from: Data(json)) else { return nil }
        self = decoded
    }

    /// `yyyymmdd` of `entered_at` as written (the generator writes Asia/Shanghai times).
    var day: String { String(enteredAt.prefix(10).filter { $0 != "-" }) }
}

/// A campus canteen's traffic: a few thousand students, a few hundred stores, visits around
/// meal times, students loyal to a handful of stores. Deterministic for a seed.
struct StoreEntryGenerator {
    var random: SplitMix64

    init(seed: UInt64) { random = SplitMix64(seed: seed) }

    mutating func events(count: Int, run: String, users: Int64 = 3000, stores: Int64 = 300) -> [StoreEntry] {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "Asia/Shanghai")
        formatter.dateFormat = "yyyy-MM-dd'T'HH:mm:ssXXXXX"
        let now = Date()
        let mealHours = [7.5, 12.0, 18.0, 21.5]
        return (0..<count).map { index in
            let user = Int64(random.next() % UInt64(users)) + 1
            // Each user favours stores near "their" store id: skewed, like real loyalty.
            let favourite = user % stores
            let spread = Int64(random.next() % 20) - 10
            let store = (favourite + spread + stores) % stores + 1
            let daysAgo = Double(random.next() % 7)
            let hour = mealHours[Int(random.next() % 4)] + Double(random.next() % 60) / 60 - 0.5
            let startOfDay = now.addingTimeInterval(
                -daysAgo * 86_400 - now.timeIntervalSince1970.truncatingRemainder(dividingBy: 86_400))
            let at = min(startOfDay.addingTimeInterval(hour * 3600 - 8 * 3600), now)
            return StoreEntry(
                eventID: "\(run)-\(index)", userID: user, storeID: store, enteredAt: formatter.string(from: at))
        }
    }
}

/// A small, fast, seedable generator (Steele et al.), so demo data is reproducible.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
