import ArgumentParser
import Foundation
import Logging
import Postgres
import PrewarmConfiguration
import PrewarmConsole
import PrewarmRuntime
import Redis

/// `prewarmctl console`: the fleet on one live page (see `ConsoleServer`).
struct ConsoleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "console",
        abstract: "Serve a live web page of the fleet: runs, tasks, lag, dead letters, alerts, pods, and actions.",
        discussion: """
            Reads PREWARM_REDIS_* (or PREWARM_REDIS_CLUSTER_NODES), and if set PREWARM_POSTGRES_URL (tasks, the retry \
            table, the retry action) and PREWARM_KAFKA_BOOTSTRAP_SERVERS (lag, dead letters, replay). The actions \
            (trigger a job, retry a task, replay dead letters) need PREWARM_ADMIN_TOKEN, entered once in the page; \
            without it they are off. A job is triggered through a ready pod that runs it, at the admin address \
            the pod announces (PREWARM_ADMIN_ADVERTISE_HOST).
            """)

    @Option(help: "The port to listen on (0: any free port, printed).")
    var port = 8089

    @Option(help: "The address to listen on (0.0.0.0 to serve other machines).")
    var host = "127.0.0.1"

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be from 0 to 65535, got \(port)") }
    }

    func run() async throws {
        let reader = EnvironmentReader(ProcessInfo.processInfo.environment)
        let logger = Logger(label: "prewarmctl-console")
        let token = try reader.optionalValue(RuntimeSettings.adminToken)
        // Kafka when it is configured; a bad Kafka setting stops the console, naming it.
        var kafka: GroupOperations?
        if reader.string(CommonSettings.kafkaBootstrapServers.variable) != nil
            || reader.string(CommonSettings.kafkaBootstrapFile.variable) != nil
        {
            kafka = try groupOperations()
        }
        let redis = try await reader.connectRedis(clientName: "prewarmctl-console")
        var postgres: PostgresPool?
        if reader.string(CommonSettings.postgresURL.variable) != nil {
            postgres = PostgresPool(try reader.postgres(applicationName: "prewarmctl-console"), maximum: 2)
        }
        let sampler = ConsoleSampler(
            redis: redis, postgres: postgres, kafka: kafka, actionsEnabled: !(token ?? "").isEmpty, logger: logger)
        let server = ConsoleServer(
            sampler: sampler, redis: redis, postgres: postgres, kafka: kafka, token: token, logger: logger)
        let host = host
        let port = port
        do {
            // Until SIGTERM (a rollout) or SIGINT: then the server stops and the clients close.
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await server.run(host: host, port: port) { port in
                        print("console: http://\(host == "0.0.0.0" ? "127.0.0.1" : host):\(port)/")
                        if token == nil { print("console: actions are off (no PREWARM_ADMIN_TOKEN)") }
                        fflush(nil)
                    }
                }
                group.addTask { print("console: \(await waitForTermination()), stopping") }
                try await group.next()
                group.cancelAll()
            }
        } catch {
            await postgres?.close()
            await redis.close()
            throw error
        }
        await postgres?.close()
        await redis.close()
    }
}
