import Synchronization

/// Store details remembered in the API process for a moment (`PREWARM_RECOMMEND_NEAR_CACHE_MS`,
/// 1 s by default; 0 turns it off), so that the personal path is one Redis round trip (the
/// user's list) instead of two (the list, then an MGET of its stores): every answer names a few
/// of the same few thousand stores, read thousands of times a second. A store's details
/// change when the scorer or a database read rewrites them; an answer may show the details
/// Redis held up to one lifetime ago, never longer. Only what Redis answered is remembered
/// (details and "no such open store" markers), never a miss. Bounded: past `capacity` stores
/// it starts again empty.
public final class DetailsNearCache: Sendable {
    public let lifetime: Duration
    public let capacity: Int
    private let entries = Mutex<[Int64: Entry]>([:])

    struct Entry {
        var details: RecommendationCache.Details
        var until: ContinuousClock.Instant
    }

    public init(lifetime: Duration, capacity: Int = 100_000) {
        self.lifetime = lifetime
        self.capacity = capacity
    }

    /// What it holds of `stores` still within its lifetime, and the stores it lacks, in order.
    func lookup(_ stores: [Int64]) -> (known: [Int64: RecommendationCache.Details], lacking: [Int64]) {
        let now = ContinuousClock.now
        var known: [Int64: RecommendationCache.Details] = [:]
        var lacking: [Int64] = []
        entries.withLock { entries in
            for store in stores {
                if let entry = entries[store], entry.until > now {
                    known[store] = entry.details
                } else {
                    lacking.append(store)
                }
            }
        }
        return (known, lacking)
    }

    /// Remembers what Redis answered for these stores (a miss is not remembered).
    func remember(_ details: [Int64: RecommendationCache.Details]) {
        let until = ContinuousClock.now + lifetime
        entries.withLock { entries in
            if entries.count + details.count > capacity { entries.removeAll(keepingCapacity: true) }
            for (store, value) in details where value != .unknown {
                entries[store] = Entry(details: value, until: until)
            }
        }
    }

    /// Forgets these stores (their details were just rewritten by this process).
    func forget(_ stores: [Int64]) {
        entries.withLock { entries in
            for store in stores { entries[store] = nil }
        }
    }
}
