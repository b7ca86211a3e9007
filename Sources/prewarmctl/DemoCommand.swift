import ArgumentParser
import Foundation
import Kafka
import Logging
import Postgres
import PrewarmConfiguration
import PrewarmRuntime
import Redis

/// `prewarmctl demo`: sends realistic store-entry events through each wrapper end to end
/// and reports what happened. Reads the same `PREWARM_*` variables as the workers.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Produce, consume and store a generated workload through Kafka, Redis and PostgreSQL."
    )

    @Option(help: "Number of store-entry events to generate.")
    var events = 5000

    @Option(help: "Seed of the generated workload (the same seed gives the same events).")
    var seed: UInt64 = 42

    func validate() throws {
        guard (1...1_000_000).contains(events) else {
            throw ValidationError("--events must be from 1 to 1000000, got \(events)")
        }
    }

    func run() async throws {
        let environment = EnvironmentReader(ProcessInfo.processInfo.environment)
        let demo = try Demo(
            kafka: environment.kafka(), redis: environment.redis(clientName: "prewarmctl-demo"),
            postgres: environment.postgres(applicationName: "prewarmctl-demo"), events: events, seed: seed)
        try await demo.run()
    }
}
