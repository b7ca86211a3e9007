import BlockingIO
import Foundation
import Logging
import Postgres
import PrewarmConfiguration
import PrewarmConsole
import PrewarmRuntime
import Redis
import Synchronization

/// The console served while `make demo` runs (`PREWARM_DEMO_CONSOLE_PORT`, 8089; another free
/// port when that one is taken; 0: none), and the screenshot `make console-screenshot` asks
/// for (`PREWARM_DEMO_SCREENSHOT`): taken once, during the key-account part.
final class DemoConsole: Sendable {
    private let state = Mutex<(url: String?, task: Task<Void, Never>?, shot: Bool)>((nil, nil, false))
    let screenshotPath: String?

    init(screenshotPath: String?) {
        self.screenshotPath = screenshotPath
    }

    var url: String? { state.withLock { $0.url } }

    /// Starts serving; returns once it listens (or could not).
    func start(environment: [String: String], port: Int, logger: Logger) async {
        guard port > 0 else { return }
        let reader = EnvironmentReader(environment)
        do {
            let redis = try await reader.connectRedis(clientName: "prewarmctl-demo-console")
            let postgres = PostgresPool(try reader.postgres(applicationName: "prewarmctl-demo-console"), maximum: 2)
            let kafka = try reader.kafka()
            let operations = GroupOperations(
                bootstrapServers: kafka.bootstrapServers, properties: kafka.properties, logger: logger)
            let sampler = ConsoleSampler(
                redis: redis, postgres: postgres, kafka: operations, actionsEnabled: false, logger: logger)
            let server = ConsoleServer(
                sampler: sampler, redis: redis, postgres: postgres, kafka: operations, token: nil, logger: logger)
            let listening = AsyncStream<Int>.makeStream()
            let task = Task {
                for candidate in [port, 0] {
                    do {
                        try await server.run(host: "127.0.0.1", port: candidate) { listening.continuation.yield($0) }
                        break
                    } catch {
                        if Task.isCancelled { break }
                        logger.debug(
                            "console could not listen", metadata: ["port": "\(candidate)", "error": "\(error)"])
                    }
                }
                listening.continuation.finish()
                await postgres.close()
                await redis.close()
            }
            var ports = listening.stream.makeAsyncIterator()
            guard let bound = await ports.next() else { return }
            let url = "http://127.0.0.1:\(bound)/"
            state.withLock { $0 = (url, task, false) }
            print(
                "console:      \(url) shows the fleet live while the demo runs (prewarmctl console serves it any time)")
        } catch {
            print("console:      not served (\(error))")
        }
    }

    /// The page as chromium draws it, once per demo, when a screenshot was asked for.
    func screenshotOnce() {
        guard let path = screenshotPath, let url else { return }
        guard
            state.withLock({ state in
                defer { state.shot = true }
                return !state.shot
            })
        else { return }
        Task.detached {
            let profile = FileManager.default.temporaryDirectory.appendingPathComponent("prewarm-shot-\(UUID())").path
            defer { try? FileManager.default.removeItem(atPath: profile) }
            do {
                let chromium = try ChildProcess.spawn(
                    "/usr/bin/chromium",
                    [
                        "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
                        "--user-data-dir=\(profile)", "--window-size=1440,1500", "--virtual-time-budget=5000",
                        "--screenshot=\(path)", url,
                    ], environment: ProcessInfo.processInfo.environment, standardError: "/dev/null")
                let status = try await chromium.wait(timeout: .seconds(60))
                print(
                    "console:      screenshot \(status == 0 ? "saved to \(path)" : "failed (chromium exit \(status))")")
            } catch {
                print("console:      screenshot failed (\(error))")
            }
        }
    }

    func stop() async {
        let task = state.withLock { $0.task }
        task?.cancel()
        await task?.value
    }
}
