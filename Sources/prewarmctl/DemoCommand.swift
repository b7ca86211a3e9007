import ArgumentParser
import Foundation

/// `prewarmctl demo`: runs a generated month of store-entry traffic through the real
/// entry-ingest worker and reports what it did. Reads the same `PREWARM_*` variables as the
/// workers; `make demo` points them at the local services.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run generated store-entry traffic through the entry-ingest worker and show what it did."
    )

    @Option(help: "Number of store-entry events to generate.")
    var events = 20_000

    @Option(help: "Seed of the generated workload (the same seed gives the same traffic).")
    var seed: UInt64 = 42

    @Option(help: "The entry-ingest executable (default: next to prewarmctl).")
    var worker: String?

    @Option(help: "Where the worker's logs go.")
    var logDirectory = ".run/demo"

    func validate() throws {
        guard (1...1_000_000).contains(events) else {
            throw ValidationError("--events must be from 1 to 1000000, got \(events)")
        }
    }

    func run() async throws {
        let executable =
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? CommandLine.arguments[0]
        let workerPath =
            worker
            ?? URL(fileURLWithPath: executable).deletingLastPathComponent().appendingPathComponent("entry-ingest")
            .path
        guard FileManager.default.isExecutableFile(atPath: workerPath) else {
            throw ValidationError("no entry-ingest executable at \(workerPath) (run: swift build, or pass --worker)")
        }
        try FileManager.default.createDirectory(atPath: logDirectory, withIntermediateDirectories: true)
        let demo = try Demo(
            environment: ProcessInfo.processInfo.environment, events: events, seed: seed, workerPath: workerPath,
            logDirectory: logDirectory)
        try await demo.run()
    }
}
