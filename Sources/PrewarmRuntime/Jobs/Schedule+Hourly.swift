import CoreMetrics
import Foundation
import Kafka
import Logging
import Postgres
import ServiceLifecycle

extension Schedule {
    var isHourly: Bool {
        if case .hourly = self { return true }
        return false
    }
}
