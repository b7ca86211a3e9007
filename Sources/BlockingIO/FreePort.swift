import Glibc
import Synchronization

/// A TCP port free on 127.0.0.1 now: for a server the demo or a test starts. It is picked
/// below the kernel's ephemeral range (`ip_local_port_range`), so the outgoing connections
/// a busy test run opens meanwhile cannot take it as their local port before the server binds
/// it, and a port is never handed out twice by one process. Another program may still bind
/// it first; the window is short.
public enum FreePort {
    private static let handedOut = Mutex<Set<Int>>([])

    public static func next() throws(FreePortUnavailable) -> Int {
        let below = min(ephemeralLowerBound(), 32_768)
        if below > 12_000 {
            for _ in 0..<256 {
                let port = Int.random(in: 10_000..<below)
                if claim(port) { return port }
            }
        }
        for _ in 0..<64 {
            if let port = bindable(0), claim(port) { return port }
        }
        throw FreePortUnavailable()
    }

    /// Marks `port` handed out if it was not already and binds now.
    private static func claim(_ port: Int) -> Bool {
        handedOut.withLock { ports in
            guard !ports.contains(port), bindable(port) == port else { return false }
            ports.insert(port)
            return true
        }
    }

    /// Binds 127.0.0.1:`port` (0: the kernel picks) and closes at once; the port bound, or nil.
    private static func bindable(_ port: Int) -> Int? {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, length) == 0 && getsockname(descriptor, $0, &length) == 0
            }
        }
        return bound ? Int(UInt16(bigEndian: address.sin_port)) : nil
    }

    /// The first port of the kernel's ephemeral range (32768 when it cannot be read).
    private static func ephemeralLowerBound() -> Int {
        let descriptor = open("/proc/sys/net/ipv4/ip_local_port_range", O_RDONLY)
        guard descriptor >= 0 else { return 32_768 }
        defer { close(descriptor) }
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = read(descriptor, &buffer, buffer.count)
        guard count > 0 else { return 32_768 }
        let digits = buffer[0..<count].drop { $0 == 0x20 || $0 == 0x09 }.prefix { $0 >= 0x30 && $0 <= 0x39 }
        return digits.isEmpty ? 32_768 : digits.reduce(0) { $0 * 10 + Int($1 - 0x30) }
    }
}

public struct FreePortUnavailable: Error, CustomStringConvertible {
    public var description: String { "no free TCP port could be bound on 127.0.0.1" }
}
