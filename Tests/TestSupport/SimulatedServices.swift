import DownstreamSimulation
import Foundation
import Logging
import PrewarmRuntime

/// The simulated downstream services, served over real HTTP on a free port for one test.
public struct SimulatedServices: Sendable {
    public let simulator: DownstreamSimulator
    public let port: Int
    public var base: URL { URL(string: "http://127.0.0.1:\(port)")! }

    public static func start(_ behaviour: DownstreamSimulator.Behaviour) async throws -> SimulatedServices {
        let simulator = DownstreamSimulator(behaviour)
        let port = try TestEnvironment.freePort()
        let serving = Task {
            try await simulator.serve(host: "127.0.0.1", port: port, logger: Logger(label: "simulator"))
        }
        closeAfterTest {
            serving.cancel()
            _ = await serving.result
        }
        let services = SimulatedServices(simulator: simulator, port: port)
        let http = DownstreamClient(connectTimeout: .seconds(1), callTimeout: .seconds(1), maxConnectionsPerHost: 4)
        try await eventually("the simulator to listen") {
            (try? await http.get(services.base.appendingPathComponent("stats"), service: "simulator")) != nil
        }
        await http.shutdown()
        return services
    }
}
