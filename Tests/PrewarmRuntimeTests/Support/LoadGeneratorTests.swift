import BlockingIO
import Foundation
import Hummingbird
import Synchronization
import TestSupport
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// `prewarm-load`, the benchmarks' open-loop load generator and delaying proxy (C), against
/// a real HTTP server: what `make bench api` reports rests on these.
@Suite("prewarm-load: open-loop latency and the delaying proxy", .closesResources)
struct LoadGeneratorTests {
    /// Runs `prewarm-load` to its end; its exit status and the key=value figures it printed.
    func load(_ arguments: [String]) async throws -> (status: Int32, figures: [String: Double]) {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("prewarm-load-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: output) }
        let child = try ChildProcess.spawn(
            TestProcess.root.appendingPathComponent(".build/debug/prewarm-load").path, arguments,
            environment: ProcessInfo.processInfo.environment, standardOutput: output)
        let status = try await child.wait(timeout: .seconds(60))
        let line = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        var figures: [String: Double] = [:]
        for pair in line.split(whereSeparator: \.isWhitespace) {
            let parts = pair.split(separator: "=", maxSplits: 1)
            if parts.count == 2, let value = Double(parts[1]) { figures[String(parts[0])] = value }
        }
        return (status, figures)
    }

    @Test("a server stall shows as the queue it made: latency counts from each request's intended send time")
    func stallIsMeasuredFromTheSchedule() async throws {
        let served = Atomic<Int>(0)
        let users = Mutex<Set<Int>>([])
        let server = try await LocalHTTPServer.start { router in
            router.get("/items/:user") { _, context -> String in
                let user = context.parameters.get("user", as: Int.self) ?? 0
                users.withLock { _ = $0.insert(user) }
                // The 100th request (one second in) takes a second: a closed-loop client on
                // one connection would send nothing meanwhile, and see one slow answer.
                if served.add(1, ordering: .relaxed).newValue == 100 { try await Task.sleep(for: .seconds(1)) }
                return "{}"
            }
        }
        let (status, figures) = try await load([
            "http", "--port", "\(server.port)", "--path", "/items/{u}", "--users", "50", "--rate", "100",
            "--seconds", "4", "--warmup", "0", "--connections", "1",
        ])
        #expect(status == 0, "figures: \(figures)")
        #expect(figures["sent"] == 400 && figures["completed"] == 400 && figures["errors"] == 0)
        // The second's 100 requests waited behind the stall, from about 1 s down to nothing:
        // an eighth of the run above 500 ms, so the p99 is most of the stall, the median is not.
        #expect((figures["p99_ms"] ?? 0) >= 800, "figures: \(figures)")
        #expect((figures["p50_ms"] ?? .infinity) < 100, "figures: \(figures)")
        #expect((figures["queued"] ?? 0) >= 50, "requests held for the busy connection: \(figures)")
        let seen = users.withLock { $0 }
        #expect(seen.allSatisfy { (1...50).contains($0) } && seen.count >= 40, "users drawn: \(seen.sorted())")
    }

    @Test("at a rate the server keeps up with, every request is answered on schedule")
    func steadyLoad() async throws {
        let server = try await LocalHTTPServer.start { router in
            router.get("/constant") { _, _ in "{\"stores\":[]}" }
        }
        let (status, figures) = try await load([
            "http", "--port", "\(server.port)", "--path", "/constant", "--rate", "500", "--seconds", "2",
            "--warmup", "1", "--connections", "8",
        ])
        #expect(status == 0, "figures: \(figures)")
        #expect(figures["completed"] == 1500 && figures["measured"] == 1000 && figures["errors"] == 0)
        #expect((figures["achieved"] ?? 0) >= 490, "figures: \(figures)")
        #expect((figures["cpu_s"] ?? -1) >= 0 && (figures["p50_ms"] ?? .infinity) < 50, "figures: \(figures)")
    }

    @Test("an answer that is not 2xx is an error and the run exits non-zero")
    func errorsCount() async throws {
        let server = try await LocalHTTPServer.start { router in
            router.get("/failing") { _, _ -> Response in Response(status: .internalServerError) }
        }
        let (status, figures) = try await load([
            "http", "--port", "\(server.port)", "--path", "/failing", "--rate", "100", "--seconds", "1",
            "--warmup", "0", "--connections", "2",
        ])
        #expect(status == 1)
        #expect(figures["errors"] == 100 && figures["completed"] == 100, "figures: \(figures)")
    }

    @Test("a bad option stops it at start-up, naming the option")
    func badOption() async throws {
        let (status, stderr) = try await TestProcess.run("prewarm-load", ["http", "--port", "0", "--rate", "10"])
        #expect(status == 2 && stderr.contains("--port"), "stderr: \(stderr)")
        let unknown = try await TestProcess.run("prewarm-load", ["http", "--rate", "10", "--colour", "red"])
        #expect(unknown.status == 2 && unknown.stderr.contains("--colour"), "stderr: \(unknown.stderr)")
    }

    @Test("the delaying proxy adds its delay each way and passes every byte in order")
    func delayProxy() async throws {
        let body = (0..<200_000).map(String.init).joined(separator: ",")  // 1.2 MB: many reads
        let server = try await LocalHTTPServer.start { router in
            router.get("/big") { _, _ in body }
        }
        let port = try TestEnvironment.freePort()
        let proxy = try TestProcess.start(
            "prewarm-load",
            ["delay-proxy", "--listen", "\(port)", "--target-port", "\(server.port)", "--delay-us", "20000"])
        defer { proxy.signal(SIGKILL) }
        let url = URL(string: "http://127.0.0.1:\(port)/big")!
        var answer: (Data, URLResponse)?
        for _ in 0..<50 where answer == nil {  // until the proxy listens
            answer = try? await URLSession.shared.data(from: url)
            if answer == nil { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(answer.map { String(decoding: $0.0, as: UTF8.self) } == body)
        let started = ContinuousClock.now
        let (again, _) = try await URLSession.shared.data(from: url)
        let elapsed = ContinuousClock.now - started
        #expect(String(decoding: again, as: UTF8.self) == body)
        #expect(elapsed >= .milliseconds(40), "a round trip through the proxy took \(elapsed): 2 x 20 ms at the least")
    }
}
