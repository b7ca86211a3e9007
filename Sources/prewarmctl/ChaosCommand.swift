import ArgumentParser
import Foundation

/// `prewarmctl chaos`: the whole fleet (two pods of every worker, recommend-api included) on
/// generated traffic of all three upstreams, one fault scenario at a time, each checked
/// against a recount from PostgreSQL, Redis and the topics. `make chaos` runs it against the
/// local services; `PREWARM_DEV_KAFKA` names the broker (mock or noida).
struct ChaosCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chaos",
        abstract: "Run the fleet under faults and check its invariants against a recount (make chaos).")

    @Argument(help: "Scenarios to run (default: every one the broker supports); --list names them.")
    var scenarios: [String] = []

    @Option(name: .customLong("repeat"), help: "Run each scenario this many times, stopping at the first failure.")
    var repeats: Int = 1

    @Option(
        help: "Seed of the first run (each run's seed is printed; the same seed gives the same traffic and faults).")
    var seed: UInt64?

    @Option(help: "Where the runs' logs go (a failed run's are kept).")
    var logDirectory = ".run/chaos"

    @Flag(help: "List the scenarios and which brokers run them.")
    var list = false

    func validate() throws {
        guard (1...1000).contains(repeats) else { throw ValidationError("--repeat must be from 1 to 1000") }
        if let unknown = scenarios.first(where: { name in !ChaosScenario.all.contains { $0.name == name } }) {
            throw ValidationError(
                "no scenario '\(unknown)'; the scenarios are \(ChaosScenario.all.map(\.name).joined(separator: ", "))")
        }
    }

    func run() async throws {
        if list {
            for scenario in ChaosScenario.all {
                print(
                    "\(scenario.name.padding(toLength: 22, withPad: " ", startingAt: 0))  \(scenario.brokers.map(\.rawValue).joined(separator: ",").padding(toLength: 11, withPad: " ", startingAt: 0))  \(scenario.summary)"
                )
            }
            return
        }
        let environment = ProcessInfo.processInfo.environment
        let broker = ChaosBroker(rawValue: environment["PREWARM_DEV_KAFKA"] ?? "mock") ?? .mock
        let chosen =
            scenarios.isEmpty
            ? ChaosScenario.all.filter { $0.brokers.contains(broker) }
            : ChaosScenario.all.filter { scenarios.contains($0.name) }
        var random = SystemRandomNumberGenerator()
        var nextSeed = seed ?? UInt64.random(in: 1...999_999, using: &random)
        var failed = false
        for scenario in chosen {
            guard scenario.brokers.contains(broker) else {
                print("\(scenario.name)  broker=\(broker.rawValue)  not run: \(scenario.unsupported(on: broker))")
                continue
            }
            var passed = 0
            for _ in 0..<repeats {
                let chaos = try Chaos(
                    environment: environment, broker: broker, scenario: scenario, seed: nextSeed,
                    logDirectory: logDirectory)
                let verdict = await chaos.run()
                print(verdict.line)
                fflush(nil)
                nextSeed &+= 1
                if verdict.passed {
                    passed += 1
                } else {
                    failed = true
                    for difference in verdict.differences.prefix(30) { print("  - \(difference)") }
                    print("  logs: \(verdict.logs); replay with: make chaos \(scenario.name) SEED=\(verdict.seed)")
                    break
                }
            }
            if repeats > 1 { print("\(scenario.name): \(passed) of \(repeats) passed") }
        }
        if failed { throw ExitCode(1) }
    }
}
