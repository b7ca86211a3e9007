import ArgumentParser
import BookRecPush
import DownstreamSimulation
import Foundation
import Logging

/// `prewarmctl simulate-downstream`: the A/B service, the recommendation engine and the
/// material service, simulated on one port, for the demo, the tests and `make bench push`.
struct SimulateDownstreamCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate-downstream",
        abstract: "Serve stand-ins for push-producer's A/B, recommendation and material services until SIGTERM.",
        discussion: """
            One port, three services: /ab/v1/experiments/{experiment}/assignment, \
            /rec/v1/recommendations, /material/v1/materials/{id} (contracts in the README). \
            GET /stats shows calls, errors and calls in flight (now and at most), per service; \
            POST /stats/reset clears them; POST /control changes the behaviour while it runs \
            ({"error_rate": 0.2, "down": ["rec"], "latency": "10ms"}). Point push-producer at \
            it with PREWARM_PUSH_AB_URL=http://HOST:PORT/ab, PREWARM_PUSH_REC_URL=.../rec, \
            PREWARM_PUSH_MATERIAL_URL=.../material.
            """
    )

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port (0: any free port, printed and written to --port-file).")
    var port = 8090

    @Option(help: "File to write the port to once listening.")
    var portFile: String?

    @Option(help: "Latency of every call: 10ms, uniform:5ms-15ms or exp:10ms.")
    var latency = "10ms"

    @Option(help: "Latency of one service, SERVICE=LATENCY (ab, rec, material); repeatable.")
    var serviceLatency: [String] = []

    @Option(help: "Share of calls answered 503, from 0 to 1.")
    var errorRate = 0.0

    @Option(help: "Share of users in the experiment, from 0 to 1.")
    var experimentShare = 0.8

    @Option(help: "The HTTP server: own (SwiftNIO, the simulator's own) or hummingbird.")
    var server: DownstreamSimulator.Server = .own

    func behaviour() throws -> DownstreamSimulator.Behaviour {
        var behaviour = DownstreamSimulator.Behaviour()
        behaviour.latency = latency
        behaviour.errorRate = errorRate
        behaviour.experimentShare = experimentShare
        for entry in serviceLatency {
            let parts = entry.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else {
                throw ValidationError("--service-latency takes SERVICE=LATENCY, got '\(entry)'")
            }
            behaviour.serviceLatency[String(parts[0])] = String(parts[1])
        }
        if let problem = behaviour.problem { throw ValidationError(problem) }
        return behaviour
    }

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be from 0 to 65535, got \(port)") }
        _ = try behaviour()
    }

    func run() async throws {
        let simulator = DownstreamSimulator(try behaviour())
        let portFile = portFile
        let behaviour = try behaviour()
        try await simulator.serve(
            host: host, port: port, logger: Logger(label: "prewarm.simulator"), server: server, signals: true
        ) {
            port in
            if let portFile { try? String(port).write(toFile: portFile, atomically: true, encoding: .utf8) }
            print(
                "simulate-downstream: ab, rec and material on http://\(self.host):\(port) (\(self.server) server) "
                    + "(latency \(behaviour.latency), errors \(behaviour.errorRate), experiment share \(behaviour.experimentShare))"
            )
        }
    }
}

extension DownstreamSimulator.Server: ExpressibleByArgument {}
