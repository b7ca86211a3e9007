import ArgumentParser
import DevBroker
import Foundation
import Kafka
import Logging
import PrewarmConfiguration
import PrewarmRuntime

/// `prewarmctl dev-broker`: librdkafka's mock cluster for the demo and the tests.
struct DevBrokerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev-broker",
        abstract: "Serve a local Kafka mock cluster (librdkafka) until SIGTERM or SIGINT.",
        discussion: """
            Creates the project's topics (or those given with --topic), writes its bootstrap \
            list to --bootstrap-file (its ports change on every start) and the address of its \
            control port to --control-file. Fault commands: `prewarmctl fault --help`.
            """
    )

    @Option(help: "Number of brokers (ids 1...N).")
    var brokers = 3

    @Option(
        name: .customLong("topic"), help: "NAME:PARTITIONS to create instead of the project's topic list; repeatable.")
    var topics: [String] = []

    @Option(help: "File to write the bootstrap list to.")
    var bootstrapFile = ".run/kafka/bootstrap"

    @Option(help: "File to write the control address (host:port) to.")
    var controlFile = ".run/kafka/control"

    func validate() throws {
        guard (1...9).contains(brokers) else { throw ValidationError("--brokers must be from 1 to 9, got \(brokers)") }
        _ = try parsedTopics()
    }

    private func parsedTopics() throws -> [(name: String, partitions: Int)] {
        guard !topics.isEmpty else { return TopicCatalog.all }
        return try topics.map { entry in
            let parts = entry.split(separator: ":")
            guard parts.count == 2, let partitions = Int(parts[1]), partitions > 0 else {
                throw ValidationError("--topic takes NAME:PARTITIONS (partitions >= 1), got '\(entry)'")
            }
            return (String(parts[0]), partitions)
        }
    }

    func run() async throws {
        let logger = Logger(label: "prewarm.dev-broker")
        let cluster = try KafkaMockCluster(brokers: brokers, logger: logger)
        for topic in try parsedTopics() {
            try cluster.createTopic(topic.name, partitions: topic.partitions)
        }
        let control = try DevBrokerControlServer(cluster: cluster)
        try writeAtomically(bootstrapFile, cluster.bootstrapServers)
        try writeAtomically(controlFile, "127.0.0.1:\(control.port)")
        print("dev broker: \(brokers) brokers at \(cluster.bootstrapServers); control on 127.0.0.1:\(control.port)")
        print("dev broker: topics \(try parsedTopics().map { "\($0.name)(\($0.partitions))" }.joined(separator: " "))")
        let signal = await waitForTermination()
        print("dev broker: \(signal), shutting down")
        control.stop()
        try? FileManager.default.removeItem(atPath: bootstrapFile)
        try? FileManager.default.removeItem(atPath: controlFile)
        cluster.shutdown()
    }

    /// Readers poll for the file, so it must appear whole.
    private func writeAtomically(_ path: String, _ text: String) throws {
        let url = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data((text + "\n").utf8).write(to: url, options: .atomic)
    }
}

/// `prewarmctl fault`: sends one control command to a running dev broker.
struct FaultCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fault",
        abstract: "Inject a fault into the running dev broker.",
        discussion: """
            Commands: \(DevBroker.DevBrokerCommand.usage). Example: prewarmctl fault broker-down 2. \
            Produce errors on the mock lose messages the client reports delivered unless the \
            producers send one request at a time \
            (PREWARM_KAFKA_PRODUCER_MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION=1): librdkafka 2.0.2's \
            mock checks produce sequences only for transactional producers.
            """
    )

    @Option(help: "The dev broker's control file.")
    var controlFile = ".run/kafka/control"

    @Argument(help: "The command and its arguments.")
    var words: [String]

    func validate() throws {
        do {
            _ = try DevBroker.DevBrokerCommand(parsing: words.joined(separator: " "))
        } catch {
            throw ValidationError(error.description)
        }
    }

    func run() throws {
        print(try DevBrokerControlClient(controlFile: controlFile).send(words.joined(separator: " ")))
    }
}

/// Suspends until SIGTERM or SIGINT and returns its name.
func waitForTermination() async -> String {
    await withCheckedContinuation { continuation in
        let once = OnceFlag()
        var sources: [DispatchSourceSignal] = []
        for (number, name) in [(SIGTERM, "SIGTERM"), (SIGINT, "SIGINT")] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                if once.claim() { continuation.resume(returning: name) }
            }
            source.resume()
            sources.append(source)
        }
        SignalSources.keep(sources)
    }
}

/// Keeps the signal sources alive for the life of the process.
enum SignalSources {
    nonisolated(unsafe) private static var kept: [DispatchSourceSignal] = []
    static func keep(_ sources: [DispatchSourceSignal]) { kept += sources }
}

final class OnceFlag: @unchecked Sendable {
    // Safe: `claimed` is only read and written under `lock`.
    private let lock = NSLock()
    private var claimed = false

    func claim() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        if claimed { return false }
        claimed = true
        return true
    }
}
