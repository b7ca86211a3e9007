import BlockingIO
import BookRecPush
import DevBroker
import EntryIngest
import Foundation
import KAPrewarm
import Kafka
import Logging
import Postgres
import PrewarmConfiguration
import PrewarmFixtures
import PrewarmRuntime
import Redis

/// What one chaos run found, as `make chaos` prints it: one line, and the recount's
/// differences when it failed.
struct ChaosVerdict {
    let scenario: String
    let broker: ChaosBroker
    let seed: UInt64
    let faults: [String]
    let items: Int
    let lost: Int
    let duplicated: Int
    let seconds: Double
    let differences: [String]
    let logs: String

    var passed: Bool { differences.isEmpty }

    var line: String {
        "\(scenario)  broker=\(broker.rawValue)  seed=\(seed)  faults=[\(faults.joined(separator: "; "))]  "
            + "items=\(items)  lost=\(lost)  duplicated=\(duplicated)  time=\(String(format: "%.1f", seconds))s  "
            + (passed ? "PASS" : "FAIL (\(differences.count) differences)")
    }
}

/// What a run produced, to recount against.
struct ChaosLedger {
    var goodEvents: Set<String> = []
    /// Bad inputs placed on each consumed topic, by where they landed.
    var bad: [String: [KafkaDeliveryReport]] = [:]
    var reservations: [Reservation] = []
    var day = ""
    var slot = ""
    var scoringAttempt = 0
    var prewarmAttempt = 0
    var pushAttempt = 0
}
