import Hummingbird
import Logging
import PrewarmRuntime
import ServiceLifecycle
import TestSupport

/// A real HTTP server on a free port for the length of a test: a stand-in for a downstream
/// service or a webhook receiver.
struct LocalHTTPServer {
    let port: Int

    var base: String { "http://127.0.0.1:\(port)" }

    static func start(_ build: (Router<BasicRequestContext>) -> Void) async throws -> LocalHTTPServer {
        let router = Router()
        build(router)
        let port = AsyncStream<Int>.makeStream()
        let application = Application(
            router: router, configuration: ApplicationConfiguration(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { port.continuation.yield($0.localAddress?.port ?? 0) },
            logger: Logger(label: "test.http"))
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(services: [application], logger: Logger(label: "test.http")))
        let task = Task { try await group.run() }
        closeAfterTest {
            await group.triggerGracefulShutdown()
            _ = try? await task.value
        }
        var ports = port.stream.makeAsyncIterator()
        guard let bound = await ports.next() else { throw UsageError("the test server did not start") }
        return LocalHTTPServer(port: bound)
    }
}
