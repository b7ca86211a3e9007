import ArgumentParser
import BookRecPush
import EntryIngest
import Foundation
import KAPrewarm
import Logging
import Postgres
import PrewarmConfiguration
import PrewarmRuntime
import StoreRecommendation

/// Every product's migrations, in one list.
enum AllMigrations {
    static let list =
        RuntimeSchema.migrations + EntryIngestSchema.migrations + StoreRecommendationSchema.migrations
        + KASchema.migrations + BookRecPushSchema.migrations
}

struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Apply the schema migrations that are missing (workers do it at start-up too); safe to repeat.")

    func run() async throws {
        let environment = EnvironmentReader(ProcessInfo.processInfo.environment)
        let logger = Logger(label: "prewarmctl")
        let connection = try await PostgresConnection.connect(
            try environment.postgres(applicationName: "prewarmctl-migrate"), logger: logger)
        do {
            let applied = try await Migrator.migrate(connection, AllMigrations.list, logger: logger)
            print(applied.isEmpty ? "schema up to date" : "applied: \(applied.map(String.init).joined(separator: " "))")
            await connection.close()
        } catch {
            await connection.close()
            throw error
        }
    }
}
