import AsyncHTTPClient
import CoreMetrics
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// An `http://host[:port]/target` URL in text, taken apart byte by byte without
/// Foundation's parser (nil for anything else: https, user info, no host, a bad port).
/// Parsed on every call: it costs about as much as copying the URL.
struct PlainHTTPURL: Equatable {
    var host: String
    var port: Int
    var target: String

    init?(_ url: String) {
        var url = url
        guard let parsed = url.withUTF8({ Self.parse($0) }) else { return nil }
        self = parsed
    }

    private static func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> PlainHTTPURL? {
        let scheme: [UInt8] = Array("http://".utf8)
        guard bytes.count > scheme.count else { return nil }
        for index in 0..<scheme.count where bytes[index] | 0x20 != scheme[index] | 0x20 { return nil }
        let start = scheme.count
        var end = start
        while end < bytes.count, bytes[end] != UInt8(ascii: "/"), bytes[end] != UInt8(ascii: "?"),
            bytes[end] != UInt8(ascii: "#")
        {
            if bytes[end] == UInt8(ascii: "@") { return nil }
            end += 1
        }
        guard end > start else { return nil }
        // The authority: host, [IPv6], then an optional :port.
        var hostRange = start..<end
        var portStart: Int?
        if bytes[start] == UInt8(ascii: "[") {
            guard let close = (start..<end).first(where: { bytes[$0] == UInt8(ascii: "]") }) else { return nil }
            hostRange = (start + 1)..<close
            if close + 1 < end {
                guard bytes[close + 1] == UInt8(ascii: ":") else { return nil }
                portStart = close + 2
            }
        } else if let colon = (start..<end).last(where: { bytes[$0] == UInt8(ascii: ":") }) {
            hostRange = start..<colon
            portStart = colon + 1
        }
        var port = 80
        if let portStart {
            guard portStart < end, end - portStart <= 5 else { return nil }
            port = 0
            for index in portStart..<end {
                let digit = Int(bytes[index]) - Int(UInt8(ascii: "0"))
                guard (0...9).contains(digit) else { return nil }
                port = port * 10 + digit
            }
            guard (1...65535).contains(port) else { return nil }
        }
        guard !hostRange.isEmpty else { return nil }
        var targetEnd = end
        while targetEnd < bytes.count, bytes[targetEnd] != UInt8(ascii: "#") { targetEnd += 1 }
        var target = String(decoding: UnsafeBufferPointer(rebasing: bytes[end..<targetEnd]), as: UTF8.self)
        if target.utf8.first != UInt8(ascii: "/") { target = "/" + target }
        return PlainHTTPURL(
            host: String(decoding: UnsafeBufferPointer(rebasing: bytes[hostRange]), as: UTF8.self), port: port,
            target: target)
    }

    init(host: String, port: Int, target: String) {
        self.host = host
        self.port = port
        self.target = target
    }
}

/// `value` percent-encoded for a query value or a path segment: every byte but RFC 3986's
/// unreserved characters as `%XX`. The value itself when it needs none (the usual case:
/// ids), without a copy.
public func percentEncoded(_ value: String) -> String {
    func unreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
            UInt8(ascii: "~"):
            return true
        default: return false
        }
    }
    guard !value.utf8.allSatisfy(unreserved) else { return value }
    let hex = Array("0123456789ABCDEF".utf8)
    var encoded: [UInt8] = []
    encoded.reserveCapacity(value.utf8.count * 3)
    for byte in value.utf8 {
        if unreserved(byte) {
            encoded.append(byte)
        } else {
            encoded += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]]
        }
    }
    return String(decoding: encoded, as: UTF8.self)
}
