import Foundation
import Glibc
import Kafka

/// Serves the control protocol on 127.0.0.1 (a random port), one line per command, one
/// line per reply (`ok`, a value, or `error: ...`).
public final class DevBrokerControlServer: Sendable {
    public let port: Int
    private let listener: Int32

    public init(cluster: KafkaMockCluster) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw DevBrokerCommandError("control socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, listen(fd, 16) == 0 else {
            close(fd)
            throw DevBrokerCommandError("control socket bind/listen: \(String(cString: strerror(errno)))")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        port = Int(UInt16(bigEndian: address.sin_port))
        listener = fd
        let thread = Thread {
            while true {
                let client = accept(fd, nil, nil)
                if client < 0 { return }
                Self.serve(client, cluster)
            }
        }
        thread.name = "dev-broker-control"
        thread.start()
    }

    /// One command per connection, then close: a client that never closes (its socket
    /// inherited by a child process, say) cannot hold up the next one.
    private static func serve(_ client: Int32, _ cluster: KafkaMockCluster) {
        let stream = LineStream(fd: client)
        defer { close(client) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard let line = stream.readLine() else { return }
        let reply: String
        do {
            reply = try DevBrokerCommand(parsing: line).apply(to: cluster)
        } catch {
            reply = "error: \(error)"
        }
        _ = stream.write(reply + "\n")
    }

    public func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }
}

/// Sends control commands to a running dev broker.
public struct DevBrokerControlClient: Sendable {
    public let host: String
    public let port: Int
    /// How long to wait for a reply (a topic creation takes well under a second).
    public var replyTimeoutSeconds = 30

    public init(host: String = "127.0.0.1", port: Int) {
        self.host = host
        self.port = port
    }

    /// Reads `host:port` from the control file the dev broker wrote.
    public init(controlFile: String) throws {
        guard let text = try? String(contentsOfFile: controlFile, encoding: .utf8) else {
            throw DevBrokerCommandError("cannot read the dev broker's control file \(controlFile); is it running?")
        }
        let parts = text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1]) else {
            throw DevBrokerCommandError("control file \(controlFile) does not hold host:port")
        }
        self.init(host: String(parts[0]), port: port)
    }

    /// Sends one command and returns the reply; an `error:` reply is thrown.
    @discardableResult
    public func send(_ command: String) throws -> String {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw DevBrokerCommandError("socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr(host)
        address.sin_port = UInt16(port).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            throw DevBrokerCommandError("dev broker control at \(host):\(port): \(String(cString: strerror(errno)))")
        }
        // A wedged broker fails the caller after the timeout instead of hanging it.
        var timeout = timeval(tv_sec: replyTimeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let stream = LineStream(fd: fd)
        guard stream.write(command + "\n"), let reply = stream.readLine() else {
            throw DevBrokerCommandError(
                "dev broker control at \(host):\(port) closed the connection or gave no reply within "
                    + "\(replyTimeoutSeconds) s")
        }
        if reply.hasPrefix("error: ") { throw DevBrokerCommandError(String(reply.dropFirst(7))) }
        return reply
    }
}

/// Line-oriented reads and whole writes on a socket.
private final class LineStream {
    let fd: Int32
    private var buffer: [UInt8] = []

    init(fd: Int32) { self.fd = fd }

    func readLine() -> String? {
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                return line.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let count = recv(fd, &chunk, chunk.count, 0)
            if count <= 0 { return nil }
            buffer.append(contentsOf: chunk[..<count])
        }
    }

    func write(_ text: String) -> Bool {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let sent = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if sent <= 0 { return false }
            bytes = bytes.dropFirst(sent)
        }
        return true
    }
}
