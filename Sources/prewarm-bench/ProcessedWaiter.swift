import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Waits until a worker's `/metrics` counts `count` processed messages, polling every
/// 50 ms from this one process: a curl per poll (a process start each time) took about 2 %
/// of the CPU the measured worker needs.
struct ProcessedWaiter {
    var port: Int
    var count: Int
    /// The worker: waiting stops with an error if it exits.
    var pid: Int32

    /// Returns when the first messages were processed (group join and start-up before).
    func wait() throws -> Duration {
        let clock = ContinuousClock()
        let started = clock.now
        var first: Duration?
        while true {
            if let processed = try? processedTotal() {
                if processed > 0, first == nil { first = clock.now - started }
                if processed >= count { return first ?? clock.now - started }
            }
            guard kill(pid, 0) == 0 else { throw WaitError.exited(pid) }
            usleep(50_000)
        }
    }

    enum WaitError: Error, CustomStringConvertible {
        case exited(Int32)
        case http(String)

        var description: String {
            switch self {
            case .exited(let pid): "the worker (pid \(pid)) exited before processing everything"
            case .http(let reason): "metrics request failed: \(reason)"
            }
        }
    }

    /// The sum of `prewarm_messages_processed_total` over its topics.
    private func processedTotal() throws -> Int {
        let text = try get("/metrics")
        var total = 0
        for line in text.split(separator: "\n") where line.hasPrefix("prewarm_messages_processed_total") {
            if let value = line.split(separator: " ").last.flatMap({ Double($0) }) { total += Int(value) }
        }
        return total
    }

    private func get(_ path: String) throws -> String {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { throw WaitError.http("socket: errno \(errno)") }
        defer { close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else { throw WaitError.http("connect: errno \(errno)") }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
        guard send(socket, request, request.count, 0) == request.count else { throw WaitError.http("send") }
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let received = recv(socket, &buffer, buffer.count, 0)
            if received <= 0 { break }
            response.append(contentsOf: buffer[0..<received])
        }
        return String(decoding: response, as: UTF8.self)
    }
}
