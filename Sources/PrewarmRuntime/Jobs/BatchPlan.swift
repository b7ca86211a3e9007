import CoreMetrics
import Foundation
import Kafka
import Logging
import Postgres
import ServiceLifecycle

/// How many items each batch of a run takes. When the run has at least a batch per
/// partition, its batch count is rounded up to a multiple of the partitions and the items are
/// dealt over those batches (sizes differ by one at most, never over the batch size), so
/// every partition, and every pod of an even share of them, gets the same work: 1,000 items
/// in batches of 40 over 3 partitions are 27 batches of 37 or 38, not 25 of 40, which left
/// one partition a batch more. The same inputs give the same plan, so a pod that takes a run
/// over goes on with it from the batch it reached. Items added after the count go in batches
/// of the batch size after the planned ones.
struct BatchPlan: Sendable, Equatable {
    /// The planned batch count, or nil when the batches simply take `batchSize` each.
    let batches: Int?
    let batchSize: Int
    private let base: Int
    private let larger: Int

    init(items: Int?, batchSize: Int, partitions: Int) {
        self.batchSize = batchSize
        let plain = items.map { ($0 + batchSize - 1) / batchSize } ?? 0
        let even = partitions > 0 ? (plain + partitions - 1) / partitions * partitions : plain
        guard let items, partitions > 1, plain >= partitions, plain % partitions != 0, items / even > 0 else {
            (batches, base, larger) = (nil, batchSize, 0)
            return
        }
        (batches, base, larger) = (even, items / even, items % even)
    }

    /// The item limit of batch `index` (from 0).
    func limit(batch index: Int) -> Int {
        guard let batches, index < batches else { return batchSize }
        return base + (index < larger ? 1 : 0)
    }
}
