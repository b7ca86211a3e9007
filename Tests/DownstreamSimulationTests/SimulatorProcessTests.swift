import DownstreamSimulation
import Foundation
import TestSupport
import Testing

@Suite("prewarmctl simulate-downstream", .closesResources)
struct SimulatorProcessTests {
    @Test(
        "it serves on the port it writes, counts the calls, and stops on SIGTERM, on either server",
        arguments: DownstreamSimulator.Server.allCases)
    func servesAndStops(server: DownstreamSimulator.Server) async throws {
        let portFile = FileManager.default.temporaryDirectory.appendingPathComponent(
            TestEnvironment.uniqueName("simulator-port")
        ).path
        let simulator = try TestProcess.start(
            "prewarmctl",
            [
                "simulate-downstream", "--port", "0", "--port-file", portFile, "--latency", "1ms", "--experiment-share",
                "1", "--server", server.rawValue,
            ])
        closeAfterTest { simulator.kill() }
        var port = 0
        try await eventually("the port file") {
            port = Int((try? String(contentsOfFile: portFile, encoding: .utf8)) ?? "") ?? 0
            return port > 0
        }
        let base = URL(string: "http://127.0.0.1:\(port)")!
        let answer = try await adminRequest(base, "GET", "ab/v1/experiments/later_read/assignment?uid=42&project=novel")
        #expect(answer.status == 200)
        #expect(answer.body == #"{"experiment":"later_read","value":"1","trace_id":"ab-later_read-42"}"#)
        #expect(try await adminRequest(base, "GET", "rec/v1/recommendations?project=novel").status == 400)
        #expect(try await adminRequest(base, "GET", "rec/v1/recommendations?uid=&project=novel").status == 400)
        let material = try await adminRequest(base, "GET", "material/v1/materials/m%2F7?uid=5&rec_id=r=1&rec_type=b")
        #expect(material.status == 200 && material.body.hasPrefix(#"{"material_id":"m/7","#), "\(material.body)")
        let stats = try await adminRequest(base, "GET", "stats")
        let decoded = try JSONDecoder().decode(DownstreamSimulator.Stats.self, from: Data(stats.body.utf8))
        #expect(decoded.services["ab"]?.calls == 1 && decoded.services["rec"]?.errors == 2)
        let control = try await adminRequest(base, "POST", "control", body: #"{"down": ["nope"]}"#)
        #expect(control.status == 400 && control.body.contains("no service 'nope'"))
        let down = try await adminRequest(base, "POST", "control", body: #"{"down": ["rec"]}"#)
        #expect(down.status == 200)
        let refused = try await adminRequest(base, "GET", "rec/v1/recommendations?uid=3&project=novel")
        #expect(refused.status == 503 && refused.body.contains("rec is down (simulated)"))
        #expect(try await adminRequest(base, "GET", "nowhere").status == 404)

        simulator.signal(SIGTERM)
        let status = try await simulator.child.wait(timeout: .seconds(10))
        #expect(status == 0, "stopped on SIGTERM")
    }
}
