import NIOCore
import NIOHTTP1

/// The bytes of a pooled call's request and the reading of its answer, without NIOHTTP1's
/// encoder and llhttp decoder: a pooled connection carries one call at a time, and what
/// those parts did for a call (headers as a dictionary of strings, an event per part, the
/// parser's callbacks) was about a tenth of a pod's CPU per call.
enum HTTP1Codec {
    /// `call` as an HTTP/1.1 request: the request line, Host, the call's headers, the
    /// body's length (0 for a POST, PUT or PATCH without one) and the body.
    static func request(_ call: HTTP1Call, into buffer: inout ByteBuffer) {
        buffer.writeString(call.method.rawValue)
        buffer.writeInteger(UInt8(ascii: " "))
        buffer.writeString(call.target)
        buffer.writeStaticString(" HTTP/1.1\r\nHost: ")
        buffer.writeString(call.host)
        if call.port != 80 {
            buffer.writeInteger(UInt8(ascii: ":"))
            buffer.writeString(String(call.port))
        }
        buffer.writeStaticString("\r\n")
        for (name, value) in call.headers {
            buffer.writeString(name)
            buffer.writeStaticString(": ")
            buffer.writeString(value)
            buffer.writeStaticString("\r\n")
        }
        if let body = call.body {
            buffer.writeStaticString("Content-Length: ")
            buffer.writeString(String(body.readableBytes))
            buffer.writeStaticString("\r\n")
        } else {
            switch call.method {
            case .POST, .PUT, .PATCH: buffer.writeStaticString("Content-Length: 0\r\n")
            default: break
            }
        }
        buffer.writeStaticString("\r\n")
        if var body = call.body { buffer.writeBuffer(&body) }
    }
}
