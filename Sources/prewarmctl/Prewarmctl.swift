import ArgumentParser
import Foundation
import Logging
import Postgres
import PrewarmConfiguration
import PrewarmRuntime

@main
struct Prewarmctl: AsyncParsableCommand {
    static func main() async {
        do {
            let reader = EnvironmentReader(ProcessInfo.processInfo.environment)
            try reader.bootstrapLogging()
            RFC3339.displayZone = try reader.timeZone()
        } catch {
            FileHandle.standardError.write(Data("prewarmctl: \(error)\n".utf8))
            Foundation.exit(64)
        }
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }

    static let configuration = CommandConfiguration(
        commandName: "prewarmctl",
        abstract:
            "Operate prewarm: fleet status, topics, consumer-group lag, offset resets, dead-letter replay, the dev broker.",
        subcommands: [
            StatusCommand.self, ConsoleCommand.self, MigrateCommand.self, ArchiveCommand.self, TopicsCommand.self,
            LagCommand.self,
            OffsetsCommand.self,
            DeadLetterCommand.self,
            DevBrokerCommand.self,
            KACommand.self, SimulateDownstreamCommand.self, FaultCommand.self, DemoCommand.self, ChaosCommand.self,
            VersionCommand.self,
        ]
    )
}

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "version", abstract: "Print prewarm's version and its C libraries'.")

    func run() {
        print("prewarm \(PrewarmVersion.current)")
        for (library, version) in PrewarmVersion.libraries { print("\(library) \(version)") }
    }
}
