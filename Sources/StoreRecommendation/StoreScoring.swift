import PrewarmConfiguration

/// The weights of the score: a store's share of the user's visits, its category's share, its
/// zone's share. Non-negative, summing to 1.
public struct ScoringWeights: Sendable, Equatable {
    public let store: Double
    public let category: Double
    public let zone: Double

    public static let standard = ScoringWeights(uncheckedStore: 0.5, category: 0.3, zone: 0.2)

    private init(uncheckedStore store: Double, category: Double, zone: Double) {
        self.store = store
        self.category = category
        self.zone = zone
    }

    /// Refuses negative weights and weights that do not sum to 1 (within 1e-6).
    public init(store: Double, category: Double, zone: Double) throws {
        for (variable, weight) in [
            ("PREWARM_SCORE_WEIGHT_STORE", store), ("PREWARM_SCORE_WEIGHT_CATEGORY", category),
            ("PREWARM_SCORE_WEIGHT_ZONE", zone),
        ] where weight < 0 || !weight.isFinite {
            throw ConfigurationError(variable, "must not be negative, got \(weight)")
        }
        guard abs(store + category + zone - 1) < 1e-6 else {
            throw ConfigurationError(
                "PREWARM_SCORE_WEIGHT_STORE",
                "the store, category and zone weights must sum to 1, got \(store) + \(category) + \(zone)")
        }
        self.init(uncheckedStore: store, category: category, zone: zone)
    }
}

/// A store as the cache and the API show it.
public struct StoreInfo: Sendable, Codable, Equatable {
    public let id: Int64
    public let name: String
    public let category: Int64
    public let zone: Int64

    public init(id: Int64, name: String, category: Int64, zone: Int64) {
        self.id = id
        self.name = name
        self.category = category
        self.zone = zone
    }
}

/// A user's visits to one store in the window, with the store's category and zone as the
/// visits recorded them.
public struct Visit: Sendable, Equatable {
    public let store: Int64
    public let category: Int64
    public let zone: Int64
    public let count: Int64

    public init(store: Int64, category: Int64, zone: Int64, count: Int64) {
        self.store = store
        self.category = category
        self.zone = zone
        self.count = count
    }
}

/// The open stores of a run, indexed for scoring: every store has a rank in tie-break order
/// (more popular first, then lower id), and the stores of each (category, zone) cell are
/// listed by rank in dense arrays, so scoring a user touches arrays, not hash tables.
public struct StoreCatalog: Sendable {
    public let open: [Int64: StoreInfo]
    /// Visits per store over all users, for ties (the previous run's tally).
    public let popularity: [Int64: Int64]
    /// Open stores in tie-break order: a store's index is its rank.
    private let ranked: [StoreInfo]
    private let rankOf: [Int64: Int32]
    private let categoryIndex: [Int64: Int]
    private let zoneIndex: [Int64: Int]
    private let cellOf: [Int32]  // per rank: category index × zone count + zone index
    private let cells: [[Int32]]  // per cell: ranks, ascending

    /// Every store's category and zone, closed ones too (a visit to a closed store still
    /// counts for its category and zone).
    private let dimensions: [Int64: (category: Int64, zone: Int64)]

    public init(open stores: [StoreInfo], closed: [StoreInfo] = [], popularity: [Int64: Int64]) {
        self.popularity = popularity
        var dimensions: [Int64: (category: Int64, zone: Int64)] = [:]
        for store in stores + closed { dimensions[store.id] = (store.category, store.zone) }
        self.dimensions = dimensions
        let ranked = stores.sorted { Self.before($0.id, $1.id, popularity) }
        self.ranked = ranked
        var open: [Int64: StoreInfo] = [:]
        var rankOf: [Int64: Int32] = [:]
        var categories: [Int64: Int] = [:]
        var zones: [Int64: Int] = [:]
        for (rank, store) in ranked.enumerated() {
            open[store.id] = store
            rankOf[store.id] = Int32(rank)
            if categories[store.category] == nil { categories[store.category] = categories.count }
            if zones[store.zone] == nil { zones[store.zone] = zones.count }
        }
        var cells = [[Int32]](repeating: [], count: categories.count * zones.count)
        var cellOf = [Int32](repeating: 0, count: ranked.count)
        for (rank, store) in ranked.enumerated() {
            let cell = categories[store.category]! * zones.count + zones[store.zone]!
            cellOf[rank] = Int32(cell)
            cells[cell].append(Int32(rank))  // ranks come in ascending order
        }
        self.open = open
        self.rankOf = rankOf
        self.categoryIndex = categories
        self.zoneIndex = zones
        self.cellOf = cellOf
        self.cells = cells
    }

    /// A visit of a store by its id, with the store's category and zone (-1, -1 for a store
    /// that is not in the table any more: it counts in the user's total only).
    public func visit(store: Int64, count: Int64) -> Visit {
        let dimensions = dimensions[store] ?? (-1, -1)
        return Visit(store: store, category: dimensions.category, zone: dimensions.zone, count: count)
    }

    /// Tie-break order: more popular first, then lower id.
    static func before(_ lhs: Int64, _ rhs: Int64, _ popularity: [Int64: Int64]) -> Bool {
        let left = popularity[lhs] ?? 0
        let right = popularity[rhs] ?? 0
        return left != right ? left > right : lhs < rhs
    }

    /// The top `length` open stores for a user with these visits: the score of store s is
    /// `store × visits at s + category × visits in s's category + zone × visits in s's zone`,
    /// each over all the user's visits. Candidates are the open stores of the categories and
    /// zones the user visited; ties go to the more popular store, then the lower id. No visit,
    /// no list.
    public func top(_ visits: [Visit], weights: ScoringWeights, length: Int) -> [Int64] {
        guard length > 0, !ranked.isEmpty else { return [] }
        let zoneCount = zoneIndex.count
        var byCategory = [Double](repeating: 0, count: categoryIndex.count)
        var byZone = [Double](repeating: 0, count: zoneCount)
        var visited: [(rank: Int32, count: Int64)] = []
        var total: Int64 = 0
        // Scores without the common division by the total: the order is the same. Visits of
        // categories or zones no open store has still count in the total, and nowhere else.
        for visit in visits where visit.count > 0 {
            total += visit.count
            if let index = categoryIndex[visit.category] { byCategory[index] += Double(visit.count) }
            if let index = zoneIndex[visit.zone] { byZone[index] += Double(visit.count) }
            if let rank = rankOf[visit.store] {
                if let at = visited.firstIndex(where: { $0.rank == rank }) {
                    visited[at].count += visit.count
                } else {
                    visited.append((rank, visit.count))
                }
            }
        }
        guard total > 0 else { return [] }
        var best = TopStores(length: length)
        for (rank, count) in visited {
            let cell = Int(cellOf[Int(rank)])
            best.offer(
                rank: rank,
                score: weights.store * Double(count) + weights.category * byCategory[cell / zoneCount]
                    + weights.zone * byZone[cell % zoneCount])
        }
        // Unvisited stores score the same within a cell, and a cell lists them by rank: its
        // first ones are all that can win.
        func offerCell(_ category: Int, _ zone: Int) {
            let score = weights.category * byCategory[category] + weights.zone * byZone[zone]
            guard best.mayEnter(score) else { return }
            var taken = 0
            for rank in cells[category * zoneCount + zone] where taken < length {
                if visited.contains(where: { $0.rank == rank }) { continue }
                if !best.offer(rank: rank, score: score) { return }  // the later ones rank lower
                taken += 1
            }
        }
        for category in byCategory.indices where byCategory[category] > 0 {
            for zone in 0..<zoneCount { offerCell(category, zone) }
        }
        for zone in byZone.indices where byZone[zone] > 0 {
            for category in byCategory.indices where byCategory[category] == 0 { offerCell(category, zone) }
        }
        return best.ranks.map { ranked[Int($0)].id }
    }

    /// The stores everyone would be shown: the same score over the visits of all users
    /// (per store; categories and zones summed from the stores'), every open store a
    /// candidate.
    public func popular(visitsPerStore: [Int64: Int64], weights: ScoringWeights, length: Int) -> [Int64] {
        var byCategory: [Int64: Int64] = [:]
        var byZone: [Int64: Int64] = [:]
        for (store, count) in visitsPerStore {
            guard let info = open[store] else { continue }
            byCategory[info.category, default: 0] += count
            byZone[info.zone, default: 0] += count
        }
        var best = TopStores(length: length)
        for (rank, info) in ranked.enumerated() {
            best.offer(
                rank: Int32(rank),
                score: weights.store * Double(visitsPerStore[info.id] ?? 0) + weights.category
                    * Double(byCategory[info.category] ?? 0) + weights.zone * Double(byZone[info.zone] ?? 0))
        }
        return best.ranks.map { ranked[Int($0)].id }
    }
}

/// The best few candidates seen so far: highest score first, and among scores within a
/// relative 1e-9 (ties) the lower rank (the more popular store, then the lower id).
struct TopStores {
    let length: Int
    private(set) var entries: [(rank: Int32, score: Double)] = []

    init(length: Int) {
        self.length = length
        entries.reserveCapacity(length + 1)
    }

    var ranks: [Int32] { entries.map(\.rank) }

    static func tied(_ lhs: Double, _ rhs: Double) -> Bool {
        abs(lhs - rhs) <= 1e-9 * max(abs(lhs), abs(rhs), 1)
    }

    /// Whether a candidate with this score could still get in (some rank might).
    func mayEnter(_ score: Double) -> Bool {
        guard entries.count == length, let last = entries.last else { return true }
        return score > last.score || Self.tied(score, last.score)
    }

    /// Offers a candidate; returns whether it got in.
    @discardableResult
    mutating func offer(rank: Int32, score: Double) -> Bool {
        var position = entries.count
        while position > 0 {
            let other = entries[position - 1]
            let ahead = Self.tied(score, other.score) ? rank < other.rank : score > other.score
            if !ahead { break }
            position -= 1
        }
        guard position < length else { return false }
        entries.insert((rank, score), at: position)
        if entries.count > length { entries.removeLast() }
        return true
    }
}
