import BlockingIO
import CHiredis
import Glibc
import Logging

/// The hiredis context and everything that touches it. Only ever used on the owning
/// `RedisConnection`'s I/O thread, which is what makes `@unchecked Sendable` safe here.
final class RedisSession: BlockingSession, @unchecked Sendable {
    private let configuration: RedisConfiguration
    private let logger: Logger
    private var context: UnsafeMutablePointer<redisContext>?
    /// Whether the open context has completed a round trip: only then can a broken
    /// connection be told apart from one that never worked.
    private var contextHasServed = false
    private var scriptSHAs: [RedisScript: String] = [:]
    /// Commands written before replies are read, per round trip.
    private let pipelineChunk = 10_000
    private var scratchLengths: [Int] = []
    private var scratchArgv: [UnsafePointer<CChar>?] = []

    init(configuration: RedisConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    deinit { disconnect() }

    func open() throws {
        try ensureConnected()
    }

    func disconnect() {
        if let context { redisFree(context) }
        context = nil
        contextHasServed = false
    }

    @discardableResult
    func ensureConnected() throws -> UnsafeMutablePointer<redisContext> {
        if let context { return context }
        let connectTimeout = timeval(seconds: configuration.connectTimeout)
        let opened: UnsafeMutablePointer<redisContext>?
        switch configuration.endpoint {
        case .tcp(let host, let port):
            opened = redisConnectWithTimeout(host, Int32(port), connectTimeout)
        case .unixSocket(let path):
            opened = redisConnectUnixWithTimeout(path, connectTimeout)
        }
        guard let opened else {
            throw RedisError(.connectionFailed, operation: "connect", message: "out of memory")
        }
        if opened.pointee.err != 0 {
            let message = Self.errorText(opened)
            redisFree(opened)
            throw RedisError(
                .connectionFailed, operation: "connect",
                message: "\(message) (\(configuration.description))")
        }
        redisSetTimeout(opened, timeval(seconds: configuration.commandTimeout))
        if case .tcp = configuration.endpoint { redisEnableKeepAlive(opened) }
        context = opened
        contextHasServed = false
        do {
            try handshake()
        } catch {
            disconnect()
            throw error
        }
        logger.debug("redis connected", metadata: ["redis": "\(configuration.description)"])
        return opened
    }

    private func handshake() throws {
        // AUTH alone first: a refused password must not also fail the commands behind it.
        let commands = configuration.handshake
        let auth = commands.prefix { $0.name == "AUTH" }
        let setup = Array(commands.dropFirst(auth.count))
        for batch in [Array(auth), setup] where !batch.isEmpty {
            if let error = configuration.handshakeError(batch, try roundTrip(batch)) { throw error }
        }
    }

    func execute(_ commands: [RedisCommand]) throws -> [RedisReply] {
        try execute(commands.map(Outgoing.one))
    }

    private func execute(_ outgoing: [Outgoing]) throws -> [RedisReply] {
        let reused = context != nil && contextHasServed
        do {
            try ensureConnected()
            return try roundTrip(outgoing)
        } catch let error as RedisError where error.code == .connectionLost && reused {
            guard configuration.retryAfterConnectionLoss else { throw error }
            logger.warning(
                "redis connection lost, reconnecting to send again",
                metadata: ["redis": "\(configuration.description)", "error": "\(error.message)"])
            try ensureConnected()
            return try roundTrip(outgoing)
        }
    }

    /// What a pipeline sends: single commands, or commands laid end to end.
    enum Outgoing {
        case one(RedisCommand)
        case many(RedisCommands)

        var replies: Int {
            switch self {
            case .one: 1
            case .many(let commands): commands.count
            }
        }
    }

    /// Sends the requests of many callers as one pipeline and answers each with its replies.
    /// Scripts go by SHA (loaded first if this connection has not loaded them); one the
    /// server lost (`NOSCRIPT`) is sent again with its source. A connection failure fails
    /// every request of the pipeline.
    func execute(_ requests: [RedisRequest]) {
        for request in requests {
            if case .script(let script, _, _) = request.work, scriptSHAs[script] == nil {
                try? load(script)  // if this fails, the pipeline sends the source instead
            }
        }
        var outgoing: [Outgoing] = []
        var ranges: [Range<Int>] = []
        ranges.reserveCapacity(requests.count)
        var expected = 0
        for request in requests {
            let start = expected
            switch request.work {
            case .commands(let batch):
                outgoing.append(contentsOf: batch.lazy.map(Outgoing.one))
                expected += batch.count
            case .batch(let commands):
                outgoing.append(.many(commands))
                expected += commands.count
            case .script(let script, let keys, let arguments):
                outgoing.append(.one(call(script, keys: keys, arguments: arguments)))
                expected += 1
            }
            ranges.append(start..<expected)
        }
        let replies: [RedisReply]
        do {
            replies = try execute(outgoing)
        } catch {
            for request in requests { request.continuation.resume(throwing: error) }
            return
        }
        for (request, range) in zip(requests, ranges) {
            if case .script(let script, let keys, let arguments) = request.work,
                case .error(let message) = replies[range.lowerBound], message.hasPrefix("NOSCRIPT")
            {
                // The server forgot the script (a restart, SCRIPT FLUSH): EVAL caches it again.
                logger.info("redis script not cached on server, sending source", metadata: ["script": "\(script.name)"])
                scriptSHAs[script] = nil
                request.continuation.resume(
                    with: Result { try execute([call(script, keys: keys, arguments: arguments)]) })
                continue
            }
            request.continuation.resume(returning: Array(replies[range]))
        }
    }

    private func load(_ script: RedisScript) throws {
        let loaded = try execute([RedisCommand("SCRIPT", "LOAD", script.source)])[0]
        guard case .bulk = loaded, let sha = loaded.string else {
            throw RedisError(.server, operation: "SCRIPT LOAD \(script.name)", message: loaded.string ?? "\(loaded)")
        }
        scriptSHAs[script] = sha
    }

    private func call(_ script: RedisScript, keys: RedisArguments, arguments: RedisArguments) -> RedisCommand {
        script.command(sha: scriptSHAs[script], keys: keys, arguments: arguments)
    }

    private func roundTrip(_ commands: [RedisCommand]) throws -> [RedisReply] {
        try roundTrip(commands.map(Outgoing.one))
    }

    /// Writes the commands, reading the replies whenever `pipelineChunk` are due, then the
    /// rest.
    private func roundTrip(_ outgoing: [Outgoing]) throws -> [RedisReply] {
        guard let context else { throw RedisError(.closed, operation: "send", message: "not connected") }
        var replies: [RedisReply] = []
        replies.reserveCapacity(outgoing.reduce(0) { $0 + $1.replies })
        var written = 0
        var operation = "pipeline"
        func read(upTo target: Int) throws {
            while replies.count < target {
                var raw: UnsafeMutableRawPointer?
                guard redisGetReply(context, &raw) == REDIS_OK, let raw else { throw fail(operation: operation) }
                replies.append(Self.copy(raw.assumingMemoryBound(to: redisReply.self)))
                freeReplyObject(raw)
            }
        }
        for item in outgoing {
            switch item {
            case .one(let command):
                operation = command.name
                guard append(command.arguments, to: context) == REDIS_OK else {
                    throw fail(operation: operation)
                }
                written += 1
            case .many(let commands):
                operation = "pipeline of \(commands.count)"
                let appended = commands.resp.withUnsafeBufferPointer { buffer in
                    buffer.withMemoryRebound(to: CChar.self) {
                        redisAppendFormattedCommand(context, $0.baseAddress, $0.count)
                    }
                }
                guard appended == REDIS_OK else { throw fail(operation: operation) }
                written += commands.count
            }
            if written - replies.count >= pipelineChunk { try read(upTo: written) }
        }
        try read(upTo: written)
        contextHasServed = true
        return replies
    }

    /// Turns the context's error into a `RedisError` and drops the context: after an I/O
    /// error the reply stream is out of step and the connection cannot be reused.
    private func fail(operation: String) -> RedisError {
        guard let context else { return RedisError(.closed, operation: operation, message: "not connected") }
        let message = Self.errorText(context)
        let code: RedisError.Code
        switch context.pointee.err {
        case REDIS_ERR_EOF: code = .connectionLost
        case REDIS_ERR_IO:
            code =
                message.contains("temporarily unavailable") || message.contains("timed out")
                ? .timeout : .connectionLost
        case REDIS_ERR_PROTOCOL, REDIS_ERR_OOM: code = .protocolError
        default: code = .connectionLost
        }
        disconnect()
        return RedisError(code, operation: operation, message: message)
    }

    /// Formats one command into hiredis's output buffer, the arguments read in place.
    private func append(_ arguments: RedisArguments, to context: UnsafeMutablePointer<redisContext>) -> Int32 {
        // Never empty, so the base address exists (an empty argument at the end points one
        // past the last byte, and hiredis reads none of it).
        let storage = arguments.bytes.isEmpty ? [0] : arguments.bytes
        return storage.withUnsafeBufferPointer { buffer in
            let base = UnsafeRawPointer(buffer.baseAddress!)
            scratchArgv.removeAll(keepingCapacity: true)
            scratchLengths.removeAll(keepingCapacity: true)
            var start = 0
            for end in arguments.ends {
                scratchArgv.append((base + start).assumingMemoryBound(to: CChar.self))
                scratchLengths.append(end - start)
                start = end
            }
            return redisAppendCommandArgv(context, Int32(arguments.count), &scratchArgv, scratchLengths)
        }
    }

    static func copy(_ reply: UnsafeMutablePointer<redisReply>) -> RedisReply {
        let value = reply.pointee
        func bytes() -> [UInt8] {
            guard let text = value.str, value.len > 0 else { return [] }
            return Array(UnsafeRawBufferPointer(start: text, count: value.len))
        }
        switch value.type {
        case REDIS_REPLY_STRING: return .bulk(bytes())
        case REDIS_REPLY_STATUS: return .status(String(decoding: bytes(), as: UTF8.self))
        case REDIS_REPLY_ERROR: return .error(String(decoding: bytes(), as: UTF8.self))
        case REDIS_REPLY_INTEGER: return .integer(Int64(value.integer))
        case REDIS_REPLY_ARRAY:
            guard let elements = value.element else { return .array([]) }
            return .array((0..<value.elements).map { copy(elements[$0]!) })
        default: return .null
        }
    }

    private static func errorText(_ context: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: context.pointee.errstr) { raw in
            let bytes = raw.prefix { $0 != 0 }
            return String(decoding: bytes, as: UTF8.self)
        }
    }
}

extension timeval {
    init(seconds: Double) {
        let whole = seconds.rounded(.down)
        self.init(tv_sec: Int(whole), tv_usec: Int((seconds - whole) * 1_000_000))
    }
}
