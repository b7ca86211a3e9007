import DownstreamSimulation
import Foundation
import Glibc
import TestSupport
import Testing

/// The simulator's own HTTP/1.1 server, spoken to byte by byte over a plain socket.
@Suite("The simulator's HTTP/1.1 server", .closesResources)
struct SimulatorHTTPTests {
    struct SocketFailure: Error, CustomStringConvertible {
        let description: String
    }

    /// Sends `pieces` (a pause between them) and reads until `done` holds for what came back
    /// or the server closes; returns what came back and whether it closed. On a thread of its
    /// own: its blocking calls must not hold one of Swift's few shared threads (other tests'
    /// lease renewals run there).
    private func exchange(port: Int, _ pieces: [String], until done: @escaping @Sendable (String) -> Bool)
        async throws -> (text: String, closed: Bool)
    {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                continuation.resume(with: Result { try Self.blockingExchange(port: port, pieces, until: done) })
            }
            thread.start()
        }
    }

    private static func blockingExchange(port: Int, _ pieces: [String], until done: (String) -> Bool) throws -> (
        text: String, closed: Bool
    ) {
        func require(_ condition: Bool, _ what: String) throws {
            if !condition { throw SocketFailure(description: what) }
        }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try require(fd >= 0, "socket")
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        try require(connected == 0, "connect to \(port)")
        var limit = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        for (index, piece) in pieces.enumerated() {
            if index > 0 { usleep(50_000) }
            let bytes = Array(piece.utf8)
            try require(send(fd, bytes, bytes.count, 0) == bytes.count, "send")
        }
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while !done(String(decoding: received, as: UTF8.self)) {
            let count = recv(fd, &chunk, chunk.count, 0)
            if count == 0 { return (String(decoding: received, as: UTF8.self), true) }
            try require(count > 0, "no answer within 5 s")
            received += chunk[0..<count]
        }
        return (String(decoding: received, as: UTF8.self), false)
    }

    private static func answers(_ text: String) -> Int { text.components(separatedBy: "HTTP/1.1 ").count - 1 }

    @Test("pipelined requests are answered in order; a request in pieces is read whole; the connection stays open")
    func pipeliningAndPieces() async throws {
        var behaviour = DownstreamSimulator.Behaviour()
        behaviour.latency = "1ms"
        behaviour.serviceLatency = ["material": "30ms"]
        let services = try await SimulatedServices.start(behaviour)
        // The first call waits 30 ms, the second 1 ms: the second answer must still come second.
        let pipelined = try await exchange(
            port: services.port,
            [
                "GET /material/v1/materials/m-1?uid=1 HTTP/1.1\r\nHost: x\r\n\r\n"
                    + "GET /rec/v1/recommendations?uid=2&project=novel HTTP/1.1\r\nHost: x\r\n\r\n"
            ]
        ) { Self.answers($0) == 2 && $0.hasSuffix("}") }
        #expect(!pipelined.closed)
        let material = try #require(pipelined.text.range(of: #""material_id":"m-1""#))
        let rec = try #require(pipelined.text.range(of: #""rec_id":"rec-2""#))
        #expect(material.lowerBound < rec.lowerBound, "answers in the order of the requests")

        let pieces = try await exchange(
            port: services.port,
            ["GET /rec/v1/recommendations?uid=7&pro", "ject=novel HTTP/1.1\r\nHo", "st: x\r\n\r", "\n"]
        ) { $0.hasSuffix("}") }
        #expect(pieces.text.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(pieces.text.contains(#""rec_id":"rec-7""#))

        // The calls' time in flight: the material call's 30 ms, the two engine calls' 1 ms each.
        let stats = services.simulator.stats
        let materialSeconds = try #require(stats.services["material"]).inFlightSeconds
        let engineSeconds = try #require(stats.services["rec"]).inFlightSeconds
        #expect(materialSeconds >= 0.030 && materialSeconds < 2, "the material call's time: \(materialSeconds) s")
        #expect(engineSeconds >= 0.002 && engineSeconds < 2, "the engine calls' time: \(engineSeconds) s")
        #expect(abs(stats.total.inFlightSeconds - materialSeconds - engineSeconds) < 0.001)
        let served = try await exchange(port: services.port, ["GET /stats HTTP/1.1\r\n\r\n"]) { $0.hasSuffix("}") }
        #expect(served.text.contains(#""in_flight_seconds":"#))
    }

    @Test("Connection: close and HTTP/1.0 close after the answer; a body by Content-Length; a chunked body refused")
    func closeBodiesAndRefusals() async throws {
        var behaviour = DownstreamSimulator.Behaviour()
        behaviour.latency = "1ms"
        let services = try await SimulatedServices.start(behaviour)
        let closing = try await exchange(
            port: services.port, ["GET /stats HTTP/1.1\r\nConnection: close\r\n\r\n"]
        ) { _ in false }
        #expect(
            closing.closed && closing.text.hasPrefix("HTTP/1.1 200 OK") && closing.text.contains("Connection: close"))
        let old = try await exchange(port: services.port, ["GET /stats HTTP/1.0\r\n\r\n"]) { _ in false }
        #expect(old.closed && old.text.hasPrefix("HTTP/1.1 200 OK"))

        let body = #"{"error_rate": 0.25}"#
        let control = try await exchange(
            port: services.port,
            [
                "POST /control HTTP/1.1\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body.prefix(5))",
                String(body.dropFirst(5)),
            ]
        ) { $0.hasSuffix("}") }
        #expect(control.text.hasPrefix("HTTP/1.1 200 OK"))
        #expect(services.simulator.behaviour.errorRate == 0.25)
        #expect(services.simulator.behaviour.latency == "1ms", "a change keeps what it does not name")
        let down = #"{"down": ["material"]}"#
        _ = try await exchange(
            port: services.port, ["POST /control HTTP/1.1\r\nContent-Length: \(down.utf8.count)\r\n\r\n\(down)"]
        ) { $0.hasSuffix("}") }
        #expect(services.simulator.behaviour.down == ["material"] && services.simulator.behaviour.errorRate == 0.25)

        let chunked = try await exchange(
            port: services.port, ["POST /control HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"]
        ) { _ in false }
        #expect(chunked.closed && chunked.text.hasPrefix("HTTP/1.1 501"))
        #expect(chunked.text.contains("Content-Length"))
        let garbage = try await exchange(port: services.port, ["NONSENSE\r\n\r\n"]) { _ in false }
        #expect(garbage.closed && garbage.text.hasPrefix("HTTP/1.1 400"))
    }
}
