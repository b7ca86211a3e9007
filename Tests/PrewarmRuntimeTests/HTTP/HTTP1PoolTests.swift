import Foundation
import Hummingbird
import MetricsTestKit
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
import TestSupport
import Testing

@testable import PrewarmRuntime

@Suite("The runtime's plain-HTTP connection pool", .closesResources)
struct HTTP1PoolTests {
    /// A server with `/slow` (answers "late" after `slowFor`) and `/fast` (answers "fast").
    private func slowAndFast(slowFor delay: Duration) async throws -> LocalHTTPServer {
        try await LocalHTTPServer.start { router in
            router.get("slow") { _, _ -> String in
                try await Task.sleep(for: delay)
                return "late"
            }
            router.get("fast") { _, _ in "fast" }
        }
    }

    /// A client closed after the test (closing it twice, as one test does, is harmless).
    private func makeClient(connections: Int, timeout: Duration = .seconds(5)) -> DownstreamClient {
        let client = DownstreamClient(
            connectTimeout: .seconds(2), callTimeout: timeout, maxConnectionsPerHost: connections)
        closeAfterTest { await client.shutdown() }
        return client
    }

    @Test("many calls at once share at most the pool's connections per host, each answered whole")
    func boundedConnections() async throws {
        let busy = Atomic<Int>(0)
        let highest = Atomic<Int>(0)
        let server = try await LocalHTTPServer.start { router in
            router.get("work/:n") { _, context -> String in
                let now = busy.add(1, ordering: .relaxed).newValue
                highest.max(now, ordering: .relaxed)
                try await Task.sleep(for: .milliseconds(20))
                busy.subtract(1, ordering: .relaxed)
                return String(repeating: context.parameters.get("n") ?? "?", count: 3000)
            }
        }
        let client = makeClient(connections: 3, timeout: .seconds(10))
        let answers = try await withThrowingTaskGroup(of: (Int, String).self) { group in
            for n in 0..<40 {
                group.addTask {
                    let answer = try await client.get(server.base + "/work/\(n % 10)", service: "test")
                    return (n, String(decoding: answer.body, as: UTF8.self))
                }
            }
            return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
        }
        #expect(answers.count == 40)
        #expect(answers.allSatisfy { $0.value == String(repeating: String($0.key % 10), count: 3000) })
        // HTTP/1.1 without pipelining: a server handling four at once saw a fourth connection.
        #expect(highest.load(ordering: .relaxed) == 3)
    }

    @Test("a budget caps the calls in flight across hosts; a caller cancelled while it waits for a slot leaves")
    func budget() async throws {
        let busy = Atomic<Int>(0)
        let highest = Atomic<Int>(0)
        func route(_ router: Router<BasicRequestContext>) {
            router.get("work") { _, _ -> String in
                highest.max(busy.add(1, ordering: .relaxed).newValue, ordering: .relaxed)
                try await Task.sleep(for: .milliseconds(20))
                busy.subtract(1, ordering: .relaxed)
                return "done"
            }
        }
        let servers = [try await LocalHTTPServer.start(route), try await LocalHTTPServer.start(route)]
        let client = makeClient(connections: 8)
        let budget = ConcurrencyLimit(3)
        let answers = try await withThrowingTaskGroup(of: String.self) { group in
            for n in 0..<40 {
                group.addTask {
                    let answer = try await client.get(
                        servers[n % 2].base + "/work", service: "test", timeout: .seconds(5), budget: budget)
                    return String(decoding: answer.body, as: UTF8.self)
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        // 40 calls of 20 ms, three at a time: about 270 ms in all (each call's limit is 5 s: on
        // a loaded CI machine one call once took more than 500 ms).
        #expect(answers.count == 40 && answers.allSatisfy { $0 == "done" })
        #expect(highest.load(ordering: .relaxed) == 3)
        #expect(budget.highestInFlight == 3 && budget.inFlight == 0)

        let holders = (0..<3).map { _ in
            Task { try await client.get(servers[0].base + "/work", service: "test", budget: budget) }
        }
        try await Task.sleep(for: .milliseconds(5))
        let waiting = Task { try await client.get(servers[1].base + "/work", service: "test", budget: budget) }
        try await Task.sleep(for: .milliseconds(5))
        waiting.cancel()
        await #expect(throws: CancellationError.self) { try await waiting.value }
        for holder in holders { _ = try await holder.value }
        #expect(budget.inFlight == 0)
    }

    @Test("a budget shared by pooled calls and tasks in `run`: cancelling one waiter takes out that one only")
    func sharedBudget() async throws {
        let server = try await LocalHTTPServer.start { router in
            router.get("slow") { _, _ -> String in
                try await Task.sleep(for: .milliseconds(300))
                return "slow"
            }
        }
        let client = makeClient(connections: 4)
        let budget = ConcurrencyLimit(1)
        let holder = Task { try await client.get(server.base + "/slow", service: "test", budget: budget) }
        try await Task.sleep(for: .milliseconds(50))
        let pooled = Task { try await client.get(server.base + "/slow", service: "test", budget: budget) }
        try await Task.sleep(for: .milliseconds(20))
        let first = Task { try await budget.run { "first" } }
        let second = Task { try await budget.run { "second" } }
        try await Task.sleep(for: .milliseconds(20))
        second.cancel()
        await #expect(throws: CancellationError.self) { try await second.value }
        #expect(try await holder.value.body == Array("slow".utf8))
        #expect(try await pooled.value.body == Array("slow".utf8), "the queued call was not the one cancelled")
        #expect(try await first.value == "first")
        #expect(budget.inFlight == 0)
    }

    @Test("a server that closes the connection after its answer costs no call: the next opens a new one")
    func closedConnections() async throws {
        let server = try await LocalHTTPServer.start { router in
            router.get("once") { _, _ -> Response in
                Response(status: .ok, headers: [.connection: "close"], body: .init(byteBuffer: ByteBuffer(string: "1")))
            }
        }
        let client = makeClient(connections: 1)
        for _ in 0..<5 {
            let answer = try await client.get(server.base + "/once", service: "test")
            #expect(answer.body == Array("1".utf8))
        }
    }

    @Test("a GET the server drops on a reused connection is sent once more on a new one; a POST is not")
    func droppedOnReuse() async throws {
        let server = try await OneAnswerServer.start()
        closeAfterTest { try? await server.channel.close() }
        let client = makeClient(connections: 1)
        let base = "http://127.0.0.1:\(server.port)"
        #expect(try await client.get(base + "/a", service: "test").body == Array("1".utf8))
        // The idle connection is open; the server drops it when the second request arrives.
        #expect(try await client.get(base + "/b", service: "test").body == Array("1".utf8))
        #expect(
            server.counts.requests.load(ordering: .relaxed) == 3
                && server.counts.connections.load(ordering: .relaxed) == 2)
        let dropped = await #expect(throws: DownstreamError.self) {
            try await client.post(URL(string: base + "/c")!, json: Array("{}".utf8), service: "test")
        }
        #expect(dropped?.kind == .connection)
        #expect(server.counts.requests.load(ordering: .relaxed) == 4, "the POST was sent once")
    }

    @Test("a caller waiting for a busy host's only connection times out at its deadline; the pool goes on")
    func waitingTimesOut() async throws {
        let server = try await slowAndFast(slowFor: .seconds(1))
        let client = makeClient(connections: 1)
        async let slow = client.get(server.base + "/slow", service: "test")
        try await Task.sleep(for: .milliseconds(200))
        let waited = await #expect(throws: DownstreamError.self) {
            try await client.get(server.base + "/fast", service: "test", timeout: .milliseconds(200))
        }
        #expect(waited?.kind == .timeout)
        #expect(try await slow.body == Array("late".utf8))
        #expect(try await client.get(server.base + "/fast", service: "test").body == Array("fast".utf8))
    }

    @Test("on one connection, each call times out at its own deadline, not an earlier call's, and not later")
    func deadlinesPerCall() async throws {
        let server = try await slowAndFast(slowFor: .seconds(6))
        let client = makeClient(connections: 1)
        func timedOut(after timeout: Duration) async -> Duration {
            let clock = ContinuousClock()
            let started = clock.now
            let error = await #expect(throws: DownstreamError.self) {
                try await client.get(server.base + "/slow", service: "test", timeout: timeout)
            }
            #expect(error?.kind == .timeout)
            return clock.now - started
        }
        // The connection's deadline check is due at the first call's deadline (1 s, room for a
        // loaded machine); the slow call after it has 2.5 s.
        #expect(try await client.get(server.base + "/fast", service: "test", timeout: .seconds(1)).status == 200)
        #expect(
            await timedOut(after: .milliseconds(2500)) >= .milliseconds(2450),
            "not ended by the earlier call's deadline")
        // A long first call, then a short one: the short one's deadline still holds.
        #expect(try await client.get(server.base + "/fast", service: "test", timeout: .seconds(20)).status == 200)
        #expect(await timedOut(after: .milliseconds(300)) < .seconds(10), "ended at its own deadline")
    }

    @Test("a cancelled caller stops waiting for a connection; after shutdown calls fail, not hang")
    func cancelAndShutdown() async throws {
        let server = try await LocalHTTPServer.start { router in
            router.get("slow") { _, _ -> String in
                try await Task.sleep(for: .milliseconds(800))
                return "late"
            }
        }
        let client = makeClient(connections: 1)
        async let slow = client.get(server.base + "/slow", service: "test")
        try await Task.sleep(for: .milliseconds(200))
        let waiting = Task { try await client.get(server.base + "/slow", service: "test") }
        try await Task.sleep(for: .milliseconds(100))
        waiting.cancel()
        await #expect(throws: CancellationError.self) { try await waiting.value }
        #expect(try await slow.body == Array("late".utf8))
        await client.shutdown()
        let after = await #expect(throws: DownstreamError.self) {
            try await client.get(server.base + "/slow", service: "test")
        }
        #expect(after?.kind == .connection)
    }
}

/// A server that answers the first request of each connection (keep-alive) and closes the
/// connection, unanswered, when a second arrives: a server dropping an idle connection
/// just as the client reuses it.
final class OneAnswerServer: Sendable {
    let channel: any Channel
    let counts: Counts

    var port: Int { channel.localAddress?.port ?? 0 }

    final class Counts: Sendable {
        let requests = Atomic<Int>(0)
        let connections = Atomic<Int>(0)
    }

    private init(channel: any Channel, counts: Counts) {
        self.channel = channel
        self.counts = counts
    }

    static func start() async throws -> OneAnswerServer {
        let counts = Counts()
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                counts.connections.add(1, ordering: .relaxed)
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Handler(counts: counts))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return OneAnswerServer(channel: channel, counts: counts)
    }

    private final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let counts: Counts
        var seen = 0

        init(counts: Counts) {
            self.counts = counts
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard case .end = unwrapInboundIn(data) else { return }
            counts.requests.add(1, ordering: .relaxed)
            seen += 1
            guard seen == 1 else {
                context.close(promise: nil)
                return
            }
            var headers = HTTPHeaders()
            headers.add(name: "Content-Length", value: "1")
            context.write(
                wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))),
                promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: "1")))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}
