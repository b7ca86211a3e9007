import NIOCore
import NIOHTTP1
import Testing

@testable import PrewarmRuntime

@Suite("A pooled call's request bytes and the reading of its answer")
struct HTTP1CodecTests {
    /// Feeds `text` whole, then again a byte at a time (both ways must give the same),
    /// reading every answer it holds until one is refused; then the close, if asked.
    func read(
        _ text: String, headOnly: Bool = false, maxBody: Int = 1 << 20, closeAtEnd: Bool = false
    ) -> [HTTP1AnswerReader.Outcome] {
        var outcomes: [[HTTP1AnswerReader.Outcome]] = []
        for pieces in [[Array(text.utf8)], Array(text.utf8).map { [$0] }] {
            var reader = HTTP1AnswerReader(maxBodyBytes: maxBody)
            reader.start(headOnly: headOnly)
            var seen: [HTTP1AnswerReader.Outcome] = []
            var refused = false
            for piece in pieces where !refused {
                var buffer = ByteBuffer(bytes: piece)
                reader.feed(&buffer)
                reading: while true {
                    let outcome = reader.next()
                    switch outcome {
                    case .needMore: break reading
                    case .answer:
                        seen.append(outcome)
                        reader.start(headOnly: headOnly)
                    case .malformed, .tooLarge:
                        seen.append(outcome)
                        refused = true
                        break reading
                    }
                }
            }
            if closeAtEnd && !refused { seen.append(reader.closed()) }
            outcomes.append(seen)
        }
        #expect(outcomes[0] == outcomes[1], "whole or a byte at a time, the same")
        return outcomes[0]
    }

    func answer(_ status: Int, _ body: String, keepAlive: Bool = true) -> HTTP1AnswerReader.Outcome {
        .answer(status: status, body: ByteBuffer(string: body), keepAlive: keepAlive)
    }

    @Test("the request: its line, Host, the call's headers and the body's length; 0 for a POST without one")
    func request() {
        var buffer = ByteBuffer()
        HTTP1Codec.request(
            HTTP1Call(
                method: .GET, host: "ab.local", port: 8080, target: "/v1/ab?user=7&exp=later_read",
                headers: [("Accept", "application/json")], timeout: .seconds(1)),
            into: &buffer)
        #expect(
            String(buffer: buffer)
                == "GET /v1/ab?user=7&exp=later_read HTTP/1.1\r\nHost: ab.local:8080\r\nAccept: application/json\r\n\r\n"
        )
        buffer.clear()
        HTTP1Call(
            method: .POST, host: "h", port: 80, target: "/x", body: ByteBuffer(string: "{}"), timeout: .seconds(1)
        )
        .write(into: &buffer)
        #expect(String(buffer: buffer) == "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}")
        buffer.clear()
        HTTP1Call(method: .POST, host: "h", port: 80, target: "/x", timeout: .seconds(1)).write(into: &buffer)
        #expect(String(buffer: buffer) == "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
    }

    @Test("a body by its length, by chunks (extensions and trailers too), or up to the close")
    func bodies() {
        #expect(read("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello") == [answer(200, "hello")])
        #expect(
            read("HTTP/1.1 200 OK\r\ncontent-length:5\r\nConnection: close\r\n\r\nhello")
                == [answer(200, "hello", keepAlive: false)])
        #expect(
            read(
                "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nwiki\r\n6\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\n\r\n"
            ) == [answer(201, "wikipedia in \r\n\r\nchunks.")])
        #expect(
            read("HTTP/1.0 200 OK\r\n\r\nall of it", closeAtEnd: true) == [answer(200, "all of it", keepAlive: false)])
        #expect(
            read("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok") == [answer(200, "ok")])
        #expect(read("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok") == [answer(200, "ok", keepAlive: false)])
        // Two answers back to back, each read in turn.
        #expect(
            read("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 503 Busy\r\nContent-Length: 1\r\n\r\nb")
                == [answer(200, "a"), answer(503, "b")])
    }

    @Test("no body for 204, 304 and a HEAD; an interim 100 is passed over")
    func noBody() {
        #expect(read("HTTP/1.1 204 No Content\r\n\r\n") == [answer(204, "")])
        #expect(read("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n") == [answer(304, "")])
        #expect(read("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", headOnly: true) == [answer(200, "")])
        #expect(
            read("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") == [answer(200, "ok")])
    }

    @Test("what a server would not send is refused, and a body over the limit is too large")
    func refused() {
        for bad in [
            "HTTP/2 200 OK\r\n\r\n", "HTTP/1.1 20 OK\r\n\r\n", "ICY 200 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: five\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n",
            "HTTP/1.1 101 Switching Protocols\r\n\r\n",
        ] {
            let outcomes = read(bad)
            #expect(outcomes.count == 1, "\(bad)")
            guard case .malformed = outcomes.first else {
                Issue.record("not refused: \(bad) -> \(outcomes)")
                continue
            }
        }
        #expect(read("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", maxBody: 10) == [.tooLarge])
        #expect(
            read("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n6\r\n", maxBody: 10) == [
                .tooLarge
            ])
        #expect(
            read("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", closeAtEnd: true).last.map {
                if case .malformed = $0 { true } else { false }
            } == true, "closed before the whole body")
    }
}

extension HTTP1Call {
    fileprivate func write(into buffer: inout ByteBuffer) { HTTP1Codec.request(self, into: &buffer) }
}
