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

/// The open stores of a run, indexed for scoring: by (category, zone) cell, each cell's
/// stores in tie-break order (more popular first, then lower id).
public struct StoreCatalog: Sendable {
    public let open: [Int64: StoreInfo]
    /// Visits per store over all users, for ties (the previous run's tally).
    public let popularity: [Int64: Int64]
    private let cells: [Cell: [Int64]]
    private let cellsOfCategory: [Int64: [Cell]]
    private let cellsOfZone: [Int64: [Cell]]

    struct Cell: Hashable {
        let category: Int64
        let zone: Int64
    }

    public init(open stores: [StoreInfo], popularity: [Int64: Int64]) {
        self.popularity = popularity
        var open: [Int64: StoreInfo] = [:]
        var cells: [Cell: [Int64]] = [:]
        for store in stores {
            open[store.id] = store
            cells[Cell(category: store.category, zone: store.zone), default: []].append(store.id)
        }
        for cell in cells.keys {
            cells[cell]!.sort { Self.before($0, $1, popularity) }
        }
        self.open = open
        self.cells = cells
        var byCategory: [Int64: [Cell]] = [:]
        var byZone: [Int64: [Cell]] = [:]
        for cell in cells.keys {
            byCategory[cell.category, default: []].append(cell)
            byZone[cell.zone, default: []].append(cell)
        }
        cellsOfCategory = byCategory
        cellsOfZone = byZone
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
        var total: Int64 = 0
        var byStore: [Int64: Int64] = [:]
        var byCategory: [Int64: Int64] = [:]
        var byZone: [Int64: Int64] = [:]
        for visit in visits where visit.count > 0 {
            total += visit.count
            byStore[visit.store, default: 0] += visit.count
            byCategory[visit.category, default: 0] += visit.count
            byZone[visit.zone, default: 0] += visit.count
        }
        guard total > 0, length > 0 else { return [] }
        // Scores without the common division by the total: the order is the same.
        func score(_ store: Int64, in cell: Cell) -> Double {
            weights.store * Double(byStore[store] ?? 0) + weights.category * Double(byCategory[cell.category] ?? 0)
                + weights.zone * Double(byZone[cell.zone] ?? 0)
        }
        var candidates: [(store: Int64, score: Double)] = []
        var seen = Set<Int64>()
        // Visited stores that are open, each on its own.
        for store in byStore.keys {
            guard let info = open[store] else { continue }
            seen.insert(store)
            candidates.append((store, score(store, in: Cell(category: info.category, zone: info.zone))))
        }
        // Unvisited stores score the same within a cell: its first `length` (in tie-break
        // order) are all that can win.
        var cellsToScore = Set<Cell>()
        for category in byCategory.keys { cellsToScore.formUnion(cellsOfCategory[category] ?? []) }
        for zone in byZone.keys { cellsToScore.formUnion(cellsOfZone[zone] ?? []) }
        for cell in cellsToScore {
            var taken = 0
            for store in cells[cell] ?? [] where !byStore.keys.contains(store) {
                guard taken < length else { break }
                if seen.insert(store).inserted {
                    candidates.append((store, score(store, in: cell)))
                }
                taken += 1
            }
        }
        return ranked(candidates, length: length)
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
        let candidates = open.values.map { info -> (store: Int64, score: Double) in
            let score =
                weights.store * Double(visitsPerStore[info.id] ?? 0) + weights.category
                * Double(byCategory[info.category] ?? 0) + weights.zone * Double(byZone[info.zone] ?? 0)
            return (info.id, score)
        }
        return ranked(candidates, length: length)
    }

    /// Highest score first; scores within a relative 1e-9 are ties.
    private func ranked(_ candidates: [(store: Int64, score: Double)], length: Int) -> [Int64] {
        candidates.sorted { lhs, rhs in
            let scale = max(abs(lhs.score), abs(rhs.score), 1)
            if abs(lhs.score - rhs.score) > 1e-9 * scale { return lhs.score > rhs.score }
            return Self.before(lhs.store, rhs.store, popularity)
        }.prefix(length).map(\.store)
    }
}
