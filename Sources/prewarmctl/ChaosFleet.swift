import BlockingIO
import Foundation

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif
#if canImport(Glibc)
    import Glibc
#endif

/// The workers of the fleet, as `make chaos` runs them.
enum ChaosWorker: String, CaseIterable, Sendable {
    case entryIngest = "entry-ingest"
    case storeScorer = "store-scorer"
    case recommendAPI = "recommend-api"
    case kaPrewarmer = "ka-prewarmer"
    case pushProducer = "push-producer"
}

/// One pod: a worker process, its admin port and its log.
final class ChaosPod {
    let worker: ChaosWorker
    let index: Int
    let port: Int
    var process: ChildProcess
    /// Started again after a kill: its logs go to a new file.
    var generation = 1

    init(worker: ChaosWorker, index: Int, port: Int, process: ChildProcess) {
        self.worker = worker
        self.index = index
        self.port = port
        self.process = process
    }

    var name: String { "\(worker.rawValue)-\(index)" }
    var isRunning: Bool { process.exitStatus() == nil }
}

/// Two pods of every worker (recommend-api too), started and stopped as a deployment would:
/// same settings, one environment, each its own admin port and log.
final class ChaosFleet {
    let binaries: URL
    var environment: [String: String]
    let logDirectory: String
    let token: String
    private(set) var pods: [ChaosPod] = []

    init(binaries: URL, environment: [String: String], logDirectory: String, token: String) {
        self.binaries = binaries
        self.environment = environment
        self.logDirectory = logDirectory
        self.token = token
    }

    func pods(of worker: ChaosWorker) -> [ChaosPod] { pods.filter { $0.worker == worker } }

    /// The pods every run started (`<pid> <binary>` a line), beside the runs' logs: a run killed
    /// from outside (Ctrl-C, `kill` of `prewarmctl chaos`) leaves its pods running, writing to
    /// the next run's Redis database and topics, and the next run stops them first.
    var registry: String {
        URL(fileURLWithPath: logDirectory).deletingLastPathComponent().appendingPathComponent("pods").path
    }

    /// Stops the pods an earlier run left running (still running the binary it started).
    func stopLeftovers() {
        let listed = (try? String(contentsOfFile: registry, encoding: .utf8)) ?? ""
        for line in listed.split(separator: "\n") {
            let fields = line.split(separator: " ", maxSplits: 1)
            guard fields.count == 2, let pid = pid_t(fields[0]) else { continue }
            let command = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline"))) ?? Data()
            let program = String(decoding: command.prefix { $0 != 0 }, as: UTF8.self)
            if program == fields[1] {
                print("chaos: stopping pod \(pid) (\(program)) left running by an earlier run")
                Glibc.kill(pid, SIGKILL)
            }
        }
        try? "".write(toFile: registry, atomically: true, encoding: .utf8)
    }

    /// Starts `count` pods of each worker and waits until every one is ready (in its group).
    func start(_ counts: [ChaosWorker: Int]) async throws {
        stopLeftovers()
        for worker in ChaosWorker.allCases {
            for index in 1...(counts[worker] ?? 0) {
                let port = try FreePort.next()
                let pod = ChaosPod(worker: worker, index: index, port: port, process: try spawn(worker, index, port, 1))
                pods.append(pod)
            }
        }
        for pod in pods { try await waitReady(pod) }
    }

    private func spawn(_ worker: ChaosWorker, _ index: Int, _ port: Int, _ generation: Int) throws -> ChildProcess {
        var variables = environment
        variables["PREWARM_ADMIN_PORT"] = String(port)
        variables["PREWARM_ADMIN_HOST"] = "127.0.0.1"
        variables["PREWARM_ADMIN_TOKEN"] = token
        if worker == .recommendAPI { variables["PREWARM_HTTP_PORT"] = String(try FreePort.next()) }
        let log = "\(logDirectory)/\(worker.rawValue)-\(index)" + (generation > 1 ? ".\(generation)" : "") + ".log"
        let program = binaries.appendingPathComponent(worker.rawValue).path
        let process = try ChildProcess.spawn(
            program, [], environment: variables, standardOutput: log, standardError: log)
        if let file = FileHandle(forWritingAtPath: registry) ?? createRegistry() {
            file.seekToEndOfFile()
            file.write(Data("\(process.pid) \(program)\n".utf8))
            try? file.close()
        }
        return process
    }

    private func createRegistry() -> FileHandle? {
        FileManager.default.createFile(atPath: registry, contents: nil)
        return FileHandle(forWritingAtPath: registry)
    }

    /// Waits until the pod answers `/readyz` (its group gave it its partitions, its stores
    /// answer); fails at once when it exits.
    func waitReady(_ pod: ChaosPod, timeout: Duration = .seconds(120)) async throws {
        let deadline = ContinuousClock.now + timeout
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(pod.port)/readyz")!)
        request.timeoutInterval = 5
        while ContinuousClock.now < deadline {
            if let status = pod.process.exitStatus() {
                throw ChaosFailure("\(pod.name) exited with status \(status) before it was ready")
            }
            if let (_, response) = try? await URLSession.shared.data(for: request),
                (response as? HTTPURLResponse)?.statusCode == 200
            {
                return
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw ChaosFailure("\(pod.name) was not ready within \(timeout)")
    }

    /// kill -9, as a node failure does.
    func kill(_ pod: ChaosPod) async {
        pod.process.signal(SIGKILL)
        _ = try? await pod.process.wait(timeout: .seconds(10))
    }

    /// The pod started again (a new process on the same port, its log a new file), once it is up.
    func restart(_ pod: ChaosPod, waitForReady: Bool = true) async throws {
        if pod.isRunning { await kill(pod) }
        pod.generation += 1
        pod.process = try spawn(pod.worker, pod.index, pod.port, pod.generation)
        if waitForReady { try await waitReady(pod) }
    }

    /// SIGTERM to every pod at once, each waited for (a hard bound past the shutdown's).
    func terminateAll() async {
        for pod in pods where pod.isRunning { pod.process.signal(SIGTERM) }
        for pod in pods { _ = try? await pod.process.wait(timeout: .seconds(40)) }
    }

    /// Every pod stopped, as a rolling shutdown would (SIGCONT first, for a stopped one).
    func stopAll() async {
        for pod in pods where pod.isRunning { pod.process.signal(SIGCONT) }
        await terminateAll()
    }

    /// Pods that died without being told to: a crash the scenario did not cause.
    var unexpectedExits: [String] {
        pods.compactMap { pod in pod.process.exitStatus().map { "\(pod.name) exited with status \($0)" } }
    }
}

struct ChaosFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
