import PrewarmConfiguration
import StoreRecommendation
import Testing

@Suite("Store scores, computed by hand")
struct StoreScoringTests {
    // Categories 1 and 2, zones 10 and 20; store 6 is closed.
    let stores = [
        StoreInfo(id: 1, name: "noodles 1", category: 1, zone: 10),
        StoreInfo(id: 2, name: "noodles 2", category: 1, zone: 20),
        StoreInfo(id: 3, name: "rice 3", category: 2, zone: 10),
        StoreInfo(id: 4, name: "rice 4", category: 2, zone: 20),
        StoreInfo(id: 5, name: "soup 5", category: 3, zone: 30),
        StoreInfo(id: 7, name: "noodles 7", category: 1, zone: 10),
    ]
    // 10 visits: store 1 ×4, closed store 6 (category 1, zone 10) ×2, store 3 ×2, store 4 ×2.
    let visits = [
        Visit(store: 1, category: 1, zone: 10, count: 4), Visit(store: 6, category: 1, zone: 10, count: 2),
        Visit(store: 3, category: 2, zone: 10, count: 2), Visit(store: 4, category: 2, zone: 20, count: 2),
    ]

    @Test("0.5 store + 0.3 category + 0.2 zone: the unvisited stall of a visited category and zone is pulled in")
    func example() {
        // Over 10 visits: category 1 has 6, category 2 has 4; zone 10 has 8, zone 20 has 2.
        // store 1: 0.5·4 + 0.3·6 + 0.2·8 = 5.4    store 3: 0.5·2 + 0.3·4 + 0.2·8 = 3.8
        // store 7: 0     + 0.3·6 + 0.2·8 = 3.4    store 4: 0.5·2 + 0.3·4 + 0.2·2 = 2.6
        // store 2: 0     + 0.3·6 + 0.2·2 = 2.2    store 6 is closed; store 5 is in nothing visited.
        let catalog = StoreCatalog(open: stores, popularity: [:])
        #expect(catalog.top(visits, weights: .standard, length: 4) == [1, 3, 7, 4])
        #expect(catalog.top(visits, weights: .standard, length: 6) == [1, 3, 7, 4, 2], "never store 5 or 6")
        #expect(catalog.top([], weights: .standard, length: 4).isEmpty, "no visit, no list")
    }

    @Test("ties go to the more popular store, then the lower id")
    func ties() {
        let eight = StoreInfo(id: 8, name: "noodles 8", category: 1, zone: 10)  // same cell as 7: score 3.4 too
        let popular = StoreCatalog(open: stores + [eight], popularity: [8: 50, 7: 10])
        #expect(popular.top(visits, weights: .standard, length: 4) == [1, 3, 8, 7])
        let even = StoreCatalog(open: stores + [eight], popularity: [:])
        #expect(even.top(visits, weights: .standard, length: 4) == [1, 3, 7, 8])
    }

    @Test("other weights change the order: all on the store leaves only the visited ones ahead")
    func weights() throws {
        let storeOnly = try ScoringWeights(store: 1, category: 0, zone: 0)
        let catalog = StoreCatalog(open: stores, popularity: [:])
        #expect(catalog.top(visits, weights: storeOnly, length: 3) == [1, 3, 4])
    }

    @Test("weights must be non-negative and sum to 1")
    func badWeights() {
        #expect(throws: ConfigurationError.self) { try ScoringWeights(store: 0.5, category: 0.5, zone: 0.5) }
        let negative = #expect(throws: ConfigurationError.self) {
            try ScoringWeights(store: 1.2, category: -0.2, zone: 0)
        }
        #expect(negative?.variable == "PREWARM_SCORE_WEIGHT_CATEGORY")
    }

    @Test("the default list: the same score over everyone's visits, every open store a candidate")
    func popular() {
        let catalog = StoreCatalog(open: stores, popularity: [:])
        // Per store: 1 → 30, 3 → 10, 5 → 25, 6 (closed) → 100. Categories: 1 → 30, 2 → 10, 3 → 25;
        // zones: 10 → 40, 30 → 25. Scores: 1: 15+9+8 = 32; 5: 12.5+7.5+5 = 25; 3: 5+3+8 = 16;
        // 7: 0+9+8 = 17; 2: 0+9+0 = 9; 4: 0+3+0 = 3.
        let list = catalog.popular(visitsPerStore: [1: 30, 3: 10, 5: 25, 6: 100], weights: .standard, length: 4)
        #expect(list == [1, 5, 7, 3])
    }
}
