import ArgumentParser

@main
struct Prewarmctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prewarmctl",
        abstract: "Operate prewarm: the local dev broker, demo and version (more arrive with the worker runtime).",
        subcommands: [DevBrokerCommand.self, FaultCommand.self, DemoCommand.self, VersionCommand.self]
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
