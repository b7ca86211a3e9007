import Foundation
import Hummingbird
import Logging
import NIOCore

/// The simulator's routes on Hummingbird (`simulate-downstream --server hummingbird`): each
/// call waits out its latency with `Task.sleep` and answers what the simulator's own server
/// answers.
struct SimulatorApplication {
    let simulator: DownstreamSimulator

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.get("ab/v1/experiments/:experiment/assignment") { request, _ in try await call(0, request) }
        router.get("rec/v1/recommendations") { request, _ in try await call(1, request) }
        router.get("material/v1/materials/:material") { request, _ in try await call(2, request) }
        router.get("stats") { _, _ in json(.ok, simulator.stats) }
        router.post("stats/reset") { _, _ in
            simulator.resetStats()
            return json(.ok, simulator.stats)
        }
        router.get("control") { _, _ in json(.ok, simulator.behaviour) }
        router.post("control") { request, _ in
            let body = try await request.body.collect(upTo: 1 << 20)
            return response(simulator.change(Data(body.readableBytesView)))
        }
        return router
    }

    private func call(_ service: Int, _ request: Request) async throws -> Response {
        let plan = simulator.enter(service)
        if plan.down { return response(simulator.downAnswer(service)) }
        try await Task.sleep(for: plan.latency.sample())
        let (_, path, query) = DownstreamSimulator.split(target: request.uri.description)
        return response(
            simulator.answer(service, path: path, query: query, errorRate: plan.errorRate, share: plan.share))
    }

    private func json(_ status: HTTPResponse.Status, _ value: some Encodable) -> Response {
        response(.json(status.code, value))
    }

    private func response(_ answer: DownstreamSimulator.Answer) -> Response {
        Response(
            status: HTTPResponse.Status(code: answer.status), headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: answer.body)))
    }
}
