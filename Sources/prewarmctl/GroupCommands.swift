import ArgumentParser
import Foundation
import Kafka
import Logging
import Postgres
import PrewarmConfiguration
import PrewarmRuntime

/// The Kafka connection every operations command uses: `PREWARM_KAFKA_*` as the workers do.
func groupOperations() throws -> GroupOperations {
    let kafka = try EnvironmentReader(ProcessInfo.processInfo.environment).kafka()
    return GroupOperations(
        bootstrapServers: kafka.bootstrapServers, properties: kafka.properties, logger: Logger(label: "prewarmctl"))
}

struct TopicsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "topics", abstract: "Manage the project's topics.", subcommands: [Create.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create every topic of topics.md that is missing (on real Kafka; the dev broker makes its own).")

        @Option(help: "Replication factor (default: 3, or the broker count if smaller).")
        var replicationFactor: Int?

        func run() async throws {
            let created = try await groupOperations().createCatalogTopics(replicationFactor: replicationFactor)
            print(created.isEmpty ? "all topics exist" : "created: \(created.joined(separator: " "))")
        }
    }
}

struct LagCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lag", abstract: "A consumer group's committed offsets against the high watermarks.")

    @Option(help: "The consumer group.")
    var group: String

    @Option(
        name: .customLong("topic"),
        help: "Topic to report (repeatable; default: the topics the catalog gives the group).")
    var topics: [String] = []

    func run() async throws {
        let topics =
            self.topics.isEmpty ? TopicCatalog.sources.filter { $0.consumerGroup == group }.map(\.name) : self.topics
        guard !topics.isEmpty else {
            throw ValidationError("the catalog has no topic for group '\(group)'; name them with --topic")
        }
        let lags = try await groupOperations().lag(group: group, topics: topics)
        print("topic\tpartition\tcommitted\thigh\tlag")
        for lag in lags {
            print(
                "\(lag.partition.topic)\t\(lag.partition.partition)\t\(lag.committed.map(String.init) ?? "-")\t\(lag.high)\t\(lag.lag)"
            )
        }
        print("total lag: \(lags.reduce(0) { $0 + $1.lag })")
    }
}

struct OffsetsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "offsets", abstract: "Change a group's committed offsets.", subcommands: [Reset.self])

    struct Reset: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move a stopped group to earliest, latest, a time or an offset: how operators replay.",
            discussion: "Refused while the group has active members: stop its workers first.")

        @Option(help: "The consumer group.")
        var group: String

        @Option(help: "The topic.")
        var topic: String

        @Option(help: "earliest | latest | an RFC 3339 time (2026-11-21T00:00:00+08:00) | an offset")
        var to: String

        func validate() throws {
            do {
                _ = try ResetTarget(parsing: to)
            } catch {
                throw ValidationError("--to: \(error)")
            }
        }

        func run() async throws {
            let offsets = try await groupOperations().resetOffsets(
                group: group, topic: topic, to: try ResetTarget(parsing: to))
            for (partition, offset) in offsets.sorted(by: { $0.key < $1.key }) {
                print("\(partition.topic)\t\(partition.partition)\t\(offset)")
            }
        }
    }
}

struct DeadLetterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlq", abstract: "Dead-letter topics.", subcommands: [Replay.self])

    struct Replay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send dead letters back to their original topic after a fix.")

        @Option(help: "The dead-letter topic, e.g. store.entry.v1.dlq.")
        var topic: String

        @Option(help: "Replay at most this many.")
        var limit: Int?

        func validate() throws {
            if let limit, limit < 1 { throw ValidationError("--limit must be at least 1, got \(limit)") }
        }

        func run() async throws {
            // Letters too large for their DLQ are kept in PostgreSQL: read back from there.
            let reader = EnvironmentReader(ProcessInfo.processInfo.environment)
            var postgres: PostgresConnection?
            if reader.string(CommonSettings.postgresURL.variable) != nil {
                postgres = try await PostgresConnection.connect(try reader.postgres(applicationName: "prewarmctl-dlq"))
            }
            let report: ReplayReport
            do {
                report = try await groupOperations().replayDeadLetters(
                    from: topic, limit: limit, store: postgres.map { DeadLetterStore(pool: PostgresPool($0)) })
            } catch {
                await postgres?.close()
                throw error
            }
            await postgres?.close()
            for (topic, count) in report.replayed.sorted(by: { $0.key < $1.key }) { print("\(topic)\t\(count)") }
            print("replayed: \(report.total)")
        }
    }
}
