import Foundation
import Kafka
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite("Dev broker sockets")
struct MockSocketTests {
    /// librdkafka's mock brokers leave Nagle's algorithm on, so a second answer on a
    /// connection waited for the client's delayed ACK (every produce to a dozen partitions
    /// took 50 ms). The connections a broker accepts must send at once, as a real broker's do.
    @Test("a connection the dev broker accepts has TCP_NODELAY, as a real broker's has")
    func acceptedConnectionsSendAtOnce() async throws {
        let cluster = try KafkaMockCluster(brokers: 1)
        defer { cluster.shutdown() }
        let brokerPort = try #require(Int(cluster.bootstrapServers.split(separator: ":").last ?? ""))
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #expect(client >= 0)
        defer { close(client) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(brokerPort).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        #expect(connected)
        let clientPort = try #require(Self.port(of: client, peer: false))
        // The broker's end of this connection: local port the broker's, peer port ours.
        var accepted: Int32?
        for _ in 0..<200 where accepted == nil {
            let entries = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")
            accepted = entries.compactMap { Int32($0) }.first {
                Self.port(of: $0, peer: false) == brokerPort && Self.port(of: $0, peer: true) == clientPort
            }
            if accepted == nil { try await Task.sleep(for: .milliseconds(10)) }
        }
        let descriptor = try #require(accepted, "the broker accepted the connection")
        var noDelay: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        #expect(getsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &noDelay, &size) == 0)
        #expect(noDelay == 1, "Nagle's algorithm is off on the broker's side")
    }

    private static func port(of descriptor: Int32, peer: Bool) -> Int? {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                (peer ? getpeername(descriptor, $0, &length) : getsockname(descriptor, $0, &length)) == 0
            }
        }
        guard named, address.sin_family == sa_family_t(AF_INET) else { return nil }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
