import BlockingIO
import CoreMetrics
import Foundation
import Kafka
import Logging
import Metrics
import Postgres
import PrewarmConfiguration
import Prometheus
import Redis
import ServiceLifecycle
import UnixSignals

/// Shuts a worker run in process down gracefully, as SIGTERM does (for embedding and tests).
public actor WorkerStop {
    private var group: ServiceGroup?
    private var requested = false

    public init() {}

    func attach(_ group: ServiceGroup) async {
        self.group = group
        if requested { await group.triggerGracefulShutdown() }
    }

    public func stop() async {
        requested = true
        await group?.triggerGracefulShutdown()
    }
}
