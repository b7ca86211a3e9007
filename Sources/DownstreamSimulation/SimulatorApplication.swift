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
        router.get("stats") { _, _ in try json(.ok, simulator.stats) }
        router.post("stats/reset") { _, _ in
            simulator.resetStats()
            return try json(.ok, simulator.stats)
        }
        router.get("control") { _, _ in try json(.ok, simulator.behaviour) }
        router.post("control") { request, _ in
            let body = try await request.body.collect(upTo: 1 << 20)
            let decoder = JSONDecoder()
            decoder.userInfo[DownstreamSimulator.Behaviour.base] = simulator.behaviour
            guard
                let changes = try? decoder.decode(
                    DownstreamSimulator.Behaviour.self, from: Data(body.readableBytesView))
            else { return try json(.badRequest, ["error": "the body is not a behaviour (JSON)"]) }
            if let problem = changes.problem { return try json(.badRequest, ["error": problem]) }
            simulator.behaviour = changes
            return try json(.ok, changes)
        }
        return router
    }

    private func call(_ service: Int, _ request: Request) async throws -> Response {
        let plan = simulator.enter(service)
        if plan.down {
            simulator.leave(service, failed: true)
            return try json(
                .serviceUnavailable, ["error": "\(DownstreamSimulator.services[service]) is down (simulated)"])
        }
        try await Task.sleep(for: plan.latency.sample())
        if plan.errorRate > 0, Double.random(in: 0..<1) < plan.errorRate {
            simulator.leave(service, failed: true)
            return try json(.serviceUnavailable, ["error": "simulated failure"])
        }
        let (_, path, query) = DownstreamSimulator.split(target: request.uri.description)
        guard let body = simulator.body(service: service, path: path, query: query, share: plan.share) else {
            simulator.leave(service, failed: true)
            return try json(.badRequest, ["error": "uid must be a positive integer"])
        }
        simulator.leave(service, failed: false)
        return Response(
            status: .ok, headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }

    private func json(_ status: HTTPResponse.Status, _ value: some Encodable) throws -> Response {
        Response(
            status: status, headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: try JSONEncoder().encode(value))))
    }
}
