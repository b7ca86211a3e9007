import NIOCore
import NIOHTTP1

/// Reads one answer at a time from the bytes a connection receives, in whatever pieces
/// they come: the status line and headers (`Content-Length`, `Transfer-Encoding: chunked`,
/// `Connection`), then the body by its length, by chunks, or (neither given) up to the
/// connection's close. Interim answers (1xx) are passed over; 204, 304 and the answer to a
/// HEAD have no body.
struct HTTP1AnswerReader {
    enum Outcome: Equatable {
        case needMore
        case answer(status: Int, body: ByteBuffer, keepAlive: Bool)
        /// Not HTTP/1 as a server sends it; the connection is to be closed.
        case malformed(String)
        case tooLarge
    }

    private enum Stage {
        case head
        case length(Int)
        case chunkSize
        case chunkData(Int)
        case trailers
        case untilClose
    }

    let maxBodyBytes: Int
    let maxHeadBytes = 64 << 10
    private var buffer = ByteBuffer()
    private var stage = Stage.head
    /// How far the search for the head's end has looked, so no byte is looked at twice.
    private var scanned = 0
    private var headOnly = false
    private var status = 0
    private var keepAlive = true
    private var body: ByteBuffer?

    init(maxBodyBytes: Int) {
        self.maxBodyBytes = maxBodyBytes
    }

    /// Bytes received and not yet part of an answer (after an answer: bytes the server sent
    /// that no request asked for).
    var leftover: Int { buffer.readableBytes }

    /// Ready for the answer to a new request (`HEAD`: one without a body).
    mutating func start(headOnly: Bool) {
        self.headOnly = headOnly
        stage = .head
        scanned = 0
        body = nil
    }

    mutating func feed(_ part: inout ByteBuffer) {
        if buffer.readableBytes == 0 {
            buffer = part  // the usual case: an answer in one read, kept without a copy
        } else {
            buffer.writeBuffer(&part)
        }
    }

    /// The answer, once all of it is there.
    mutating func next() -> Outcome {
        while true {
            switch stage {
            case .head:
                guard let end = headEnd() else {
                    return buffer.readableBytes > maxHeadBytes ? .malformed("an answer head over 64 KB") : .needMore
                }
                if let problem = readHead(length: end) { return .malformed(problem) }
            case .length(let count):
                guard count <= maxBodyBytes else { return .tooLarge }
                guard buffer.readableBytes >= count else { return .needMore }
                return answer(buffer.readSlice(length: count)!)
            case .chunkSize:
                guard let line = readLine() else { return chunkLineTooLong() }
                var size = 0
                var digits = 0
                for byte in line {
                    if byte == UInt8(ascii: ";") { break }  // a chunk extension: ignored
                    if let digit = Self.hexDigit(byte) {
                        guard size < 1 << 40 else { return .malformed("a bad chunk size") }
                        size = size * 16 + digit
                        digits += 1
                    } else if byte != UInt8(ascii: " ") && byte != UInt8(ascii: "\t") {
                        return .malformed("a bad chunk size")
                    }
                }
                guard digits > 0 else { return .malformed("a bad chunk size") }
                if size == 0 {
                    stage = .trailers
                } else {
                    guard (body?.readableBytes ?? 0) + size <= maxBodyBytes else { return .tooLarge }
                    stage = .chunkData(size)
                }
            case .chunkData(let size):
                guard buffer.readableBytes >= size + 2 else { return .needMore }
                var data = buffer.readSlice(length: size)!
                guard buffer.readInteger(as: UInt16.self) == 0x0D0A else { return .malformed("a chunk without CRLF") }
                if body == nil { body = data } else { body!.writeBuffer(&data) }
                stage = .chunkSize
            case .trailers:
                guard let line = readLine() else { return chunkLineTooLong() }
                if line.isEmpty { return answer(body ?? ByteBuffer()) }
            case .untilClose:
                guard buffer.readableBytes <= maxBodyBytes else { return .tooLarge }
                return .needMore
            }
        }
    }

    /// The connection closed: the answer if its body ends there, else what went wrong.
    mutating func closed() -> Outcome {
        guard case .untilClose = stage else { return .malformed("the server closed the connection") }
        let all = buffer.readSlice(length: buffer.readableBytes)!
        keepAlive = false
        return answer(all)
    }

    private mutating func answer(_ content: ByteBuffer) -> Outcome {
        stage = .head
        scanned = 0
        body = nil
        return .answer(status: status, body: content, keepAlive: keepAlive)
    }

    private func chunkLineTooLong() -> Outcome {
        buffer.readableBytes > 4096 ? .malformed("a chunk line over 4 KB") : .needMore
    }

    /// The index (from the reader index) just past the head's blank line, if it is there.
    private mutating func headEnd() -> Int? {
        let found: Int? = buffer.withUnsafeReadableBytes { bytes in
            var index = max(scanned, 1)
            while index < bytes.count {
                if bytes[index] == 0x0A {
                    if bytes[index - 1] == 0x0A { return index + 1 }
                    if index >= 2, bytes[index - 1] == 0x0D, bytes[index - 2] == 0x0A { return index + 1 }
                }
                index += 1
            }
            return nil
        }
        if found == nil { scanned = buffer.readableBytes }
        return found
    }

    /// One line without its CRLF (or LF), consumed; nil while it is not all there.
    private mutating func readLine() -> [UInt8]? {
        guard let end = buffer.readableBytesView.firstIndex(of: 0x0A) else { return nil }
        var line = buffer.readBytes(length: end - buffer.readerIndex + 1)!
        line.removeLast()
        if line.last == 0x0D { line.removeLast() }
        return line
    }

    /// Reads the status line and headers (`length` bytes) and chooses how the body ends.
    private mutating func readHead(length: Int) -> String? {
        let head = buffer.readSlice(length: length)!
        scanned = 0
        var contentLength: Int?
        var chunked = false
        var close = false
        var keepAliveAsked = false
        var minor = 1
        let problem: String? = head.withUnsafeReadableBytes { bytes in
            var lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false).map { line in
                line.last == 0x0D ? line.dropLast() : line
            }
            while lines.last?.isEmpty == true { lines.removeLast() }
            guard let statusLine = lines.first, statusLine.count >= 12,
                statusLine.starts(with: "HTTP/1.".utf8), let version = statusLine.dropFirst(7).first,
                version == UInt8(ascii: "0") || version == UInt8(ascii: "1"),
                statusLine[statusLine.startIndex + 8] == UInt8(ascii: " ")
            else { return "not an HTTP/1 status line" }
            minor = Int(version - 48)
            let code = statusLine.dropFirst(9).prefix(3)
            guard code.count == 3, code.allSatisfy({ $0 >= 48 && $0 <= 57 }),
                statusLine.count == 12 || statusLine[statusLine.startIndex + 12] == UInt8(ascii: " ")
            else { return "not a three-digit status" }
            status = code.reduce(0) { $0 * 10 + Int($1 - 48) }
            for line in lines.dropFirst() {
                guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { return "a header line without a colon" }
                let name = line[line.startIndex..<colon]
                let value = Self.trimmed(line[(colon + 1)...])
                if Self.named(name, "content-length") {
                    guard !value.isEmpty, value.count <= 15, value.allSatisfy({ $0 >= 48 && $0 <= 57 }) else {
                        return "a bad Content-Length"
                    }
                    let number = value.reduce(0) { $0 * 10 + Int($1 - 48) }
                    if let earlier = contentLength, earlier != number { return "two different Content-Lengths" }
                    contentLength = number
                } else if Self.named(name, "transfer-encoding") {
                    let last = value.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false).last
                    chunked = last.map { Self.named(Self.trimmed($0), "chunked") } ?? false
                    if !chunked { contentLength = nil }
                } else if Self.named(name, "connection") {
                    for token in value.split(separator: UInt8(ascii: ",")).map(Self.trimmed) {
                        if Self.named(token, "close") { close = true }
                        if Self.named(token, "keep-alive") { keepAliveAsked = true }
                    }
                }
            }
            return nil
        }
        if let problem { return problem }
        keepAlive = !close && (minor == 1 || keepAliveAsked)
        switch status {
        case 101: return "an upgrade nobody asked for"
        case 100..<200:
            stage = .head  // interim: the answer follows
            return nil
        case 204, 304:
            stage = .length(0)
            return nil
        default: break
        }
        if headOnly {
            stage = .length(0)
        } else if chunked {
            stage = .chunkSize
        } else if let contentLength {
            stage = .length(contentLength)  // `next()` refuses one over the limit
        } else {
            keepAlive = false
            stage = .untilClose
        }
        return nil
    }

    private static func trimmed(_ bytes: Slice<UnsafeRawBufferPointer>) -> Slice<UnsafeRawBufferPointer> {
        var value = bytes
        while let first = value.first, first == 32 || first == 9 { value = value.dropFirst() }
        while let last = value.last, last == 32 || last == 9 { value = value.dropLast() }
        return value
    }

    /// Whether a header's name is `lowercased`, in any case.
    private static func named(_ name: Slice<UnsafeRawBufferPointer>, _ lowercased: StaticString) -> Bool {
        guard name.count == lowercased.utf8CodeUnitCount else { return false }
        return lowercased.withUTF8Buffer { expected in
            zip(name, expected).allSatisfy { byte, want in (byte | 0x20) == want || byte == want }
        }
    }

    private static func hexDigit(_ byte: UInt8) -> Int? {
        switch byte {
        case 48...57: Int(byte - 48)
        case 97...102: Int(byte - 87)
        case 65...70: Int(byte - 55)
        default: nil
        }
    }
}
