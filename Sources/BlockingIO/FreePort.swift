import Glibc

/// A TCP port free on 127.0.0.1 now (the kernel picks it): for a server the demo or a test
/// starts. Another process may take it before it is used; the window is short.
public enum FreePort {
    public static func next() throws(FreePortUnavailable) -> Int {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw FreePortUnavailable() }
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, length) == 0 && getsockname(descriptor, $0, &length) == 0
            }
        }
        guard bound else { throw FreePortUnavailable() }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

public struct FreePortUnavailable: Error, CustomStringConvertible {
    public var description: String { "no free TCP port could be bound on 127.0.0.1" }
}
