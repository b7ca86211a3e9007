import NIOPosix
import Redis
import TestSupport
import Testing

/// The two ways a connection does its I/O; every behaviour below holds for both.
enum RedisTransport: String, CaseIterable, CustomTestStringConvertible {
    case thread
    case eventLoop

    var testDescription: String { rawValue }

    func connect(_ configuration: RedisConfiguration) async throws -> any RedisTestClient {
        switch self {
        case .thread: try await RedisConnection.connect(configuration)
        case .eventLoop:
            try await RedisEventLoopConnection.connect(
                configuration, eventLoop: MultiThreadedEventLoopGroup.singleton.next())
        }
    }
}

/// A single connection: it also sends commands laid end to end.
protocol RedisTestClient: RedisClient {
    func pipeline(_ commands: RedisCommands) async throws -> [RedisReply]
}

extension RedisConnection: RedisTestClient {}
extension RedisEventLoopConnection: RedisTestClient {}

@Suite("Redis connection against the local server", .closesResources)
struct RedisConnectionTests {
    @Test(
        "pipelined SETs are all stored and MGET returns them in order, nil for missing keys",
        arguments: RedisTransport.allCases)
    func pipelineAndMGET(_ transport: RedisTransport) async throws {
        let redis = try await transport.connect(try TestEnvironment.redis())
        closeAfterTest { await redis.close() }
        let prefix = TestEnvironment.uniqueName("pipe")
        let count = 25_000  // more than one internal pipeline chunk
        let replies = try await redis.pipeline(
            (0..<count).map { RedisCommand("SET", "\(prefix):\($0)", "value-\($0)", "EX", 60) })
        #expect(replies.count == count)
        #expect(replies.allSatisfy { $0 == .status("OK") })

        let keys = (0..<count).map { "\(prefix):\($0)" } + ["\(prefix):missing"]
        let values = try await redis.mget(keys)
        #expect(values.count == count + 1)
        #expect(values[0].map { String(decoding: $0, as: UTF8.self) } == "value-0")
        #expect(values[count - 1].map { String(decoding: $0, as: UTF8.self) } == "value-\(count - 1)")
        #expect(values[count] == nil)
        let wrong = values.prefix(count).enumerated().filter { index, value in
            value.map { String(decoding: $0, as: UTF8.self) } != "value-\(index)"
        }
        #expect(wrong.isEmpty)
    }

    @Test("an error reply inside a pipeline comes back in place; send throws it", arguments: RedisTransport.allCases)
    func errorReplies(_ transport: RedisTransport) async throws {
        let redis = try await transport.connect(try TestEnvironment.redis())
        closeAfterTest { await redis.close() }
        let key = TestEnvironment.uniqueName("list")
        let replies = try await redis.pipeline([
            RedisCommand("RPUSH", key, "a"), RedisCommand("INCR", key), RedisCommand("LLEN", key),
        ])
        #expect(replies[0] == .integer(1))
        guard case .error(let message) = replies[1] else {
            Issue.record("expected WRONGTYPE, got \(replies[1])")
            return
        }
        #expect(message.hasPrefix("WRONGTYPE"))
        #expect(replies[2] == .integer(1))
        let error = await #expect(throws: RedisError.self) { try await redis.send("INCR", key) }
        #expect(error?.code == .server)
        #expect(error?.serverErrorPrefix == "WRONGTYPE")
        #expect(error?.isTransient == false)
        try await redis.send("DEL", key)
    }

    @Test(
        "integers, empty and binary arguments reach the server as the same bytes, in place and in order",
        arguments: RedisTransport.allCases)
    func argumentsInPlace(_ transport: RedisTransport) async throws {
        let redis = try await transport.connect(try TestEnvironment.redis())
        closeAfterTest { await redis.close() }
        let key = TestEnvironment.uniqueName("args")
        let integers: [Int64] = [0, 7, -1, 10, 1_000_000_007, .max, .min]
        var arguments = RedisArguments()
        arguments.append(key)
        for value in integers { arguments.append(value) }
        arguments.append("")
        arguments.append([0, 255, 10] as [UInt8])
        #expect(try await redis.send(RedisCommand("RPUSH", arguments: arguments)) == .integer(9))
        let reply = try await redis.send("LRANGE", key, 0, -1)
        guard case .array(let elements) = reply else {
            Issue.record("expected a list, got \(reply)")
            return
        }
        #expect(elements.map(\.bytes) == integers.map { Array(String($0).utf8) } + [[], [0, 255, 10]])
        try await redis.send("DEL", key)
    }

    @Test("binary values survive a round trip unchanged", arguments: RedisTransport.allCases)
    func binarySafe(_ transport: RedisTransport) async throws {
        let redis = try await transport.connect(try TestEnvironment.redis())
        closeAfterTest { await redis.close() }
        let key = TestEnvironment.uniqueName("bin")
        let bytes: [UInt8] = [0, 1, 2, 255, 13, 10, 0, 36]
        try await redis.send("SET", key, bytes, "EX", 60)
        #expect(try await redis.send("GET", key).bytes == bytes)
    }

    @Test("a wrong password is refused with a clear error that does not repeat it", arguments: RedisTransport.allCases)
    func wrongPassword(_ transport: RedisTransport) async throws {
        let error = await #expect(throws: RedisError.self) {
            _ = try await transport.connect(try TestEnvironment.redis(password: "not-the-password-123"))
        }
        #expect(error?.code == .authenticationFailed)
        #expect(error?.isTransient == false)
        #expect(error?.description.contains("WRONGPASS") == true)
        #expect(error?.description.contains("not-the-password-123") == false)
    }

    @Test(
        "no password against a server that wants one is reported as an authentication failure",
        arguments: RedisTransport.allCases)
    func missingPassword(_ transport: RedisTransport) async throws {
        var configuration = try TestEnvironment.redis(password: .some(nil), retryAfterConnectionLoss: false)
        configuration.database = 0  // no SELECT at connect: the first command meets NOAUTH
        let redis = try await transport.connect(configuration)
        closeAfterTest { await redis.close() }
        let error = await #expect(throws: RedisError.self) { try await redis.send("PING") }
        #expect(error?.serverErrorPrefix == "NOAUTH")
    }

    @Test("nothing listening is a transient connect failure naming the address", arguments: RedisTransport.allCases)
    func connectionRefused(_ transport: RedisTransport) async throws {
        let configuration = RedisConfiguration(endpoint: .tcp(host: "127.0.0.1", port: 1), password: "secret-xyz")
        let error = await #expect(throws: RedisError.self) { _ = try await transport.connect(configuration) }
        #expect(error?.code == .connectionFailed)
        #expect(error?.isTransient == true)
        #expect(error?.description.contains("127.0.0.1:1") == true)
        #expect(error?.description.contains("secret-xyz") == false)
    }

    @Test("an ACL user over the unix socket, in another database", arguments: RedisTransport.allCases)
    func aclUserOverUnixSocket(_ transport: RedisTransport) async throws {
        let admin = try await transport.connect(try TestEnvironment.redis())
        closeAfterTest { await admin.close() }
        let user = TestEnvironment.uniqueName("worker")
        try await admin.send("ACL", "SETUSER", user, "on", ">user-secret", "~*", "+@all")
        closeAfterTest { _ = try? await admin.send("ACL", "DELUSER", user) }
        let configuration = RedisConfiguration(
            endpoint: .unixSocket(path: try TestEnvironment.redisSocket), user: user, password: "user-secret",
            database: 3)
        let redis = try await transport.connect(configuration)
        closeAfterTest { await redis.close() }
        #expect(try await redis.send("ACL", "WHOAMI").string == user)
        let key = TestEnvironment.uniqueName("db3")
        try await redis.send("SET", key, "x", "EX", 60)
        #expect(try await admin.send("EXISTS", key) == .integer(0))  // admin is on the tests' database
    }

    @Test("a dropped connection is reopened and the command sent again", arguments: RedisTransport.allCases)
    func droppedConnectionRecovered(_ transport: RedisTransport) async throws {
        let admin = try await transport.connect(try TestEnvironment.redis())
        closeAfterTest { await admin.close() }
        let redis = try await transport.connect(try TestEnvironment.redis(clientName: "victim"))
        closeAfterTest { await redis.close() }
        let key = TestEnvironment.uniqueName("drop")
        try await redis.send("SET", key, "before", "EX", 60)
        let id = try #require(try await redis.send("CLIENT", "ID").integer)
        #expect(try await admin.send("CLIENT", "KILL", "ID", id) == .integer(1))
        #expect(try await redis.send("GET", key).string == "before")
        #expect(try await redis.send("CLIENT", "ID").integer != id)
    }

    @Test("without retry, a dropped connection fails once as transient, then works again")
    func droppedConnectionWithoutRetry() async throws {
        let transport = RedisTransport.thread  // a blocking connection finds the drop when it next sends
        let admin = try await transport.connect(try TestEnvironment.redis())
        closeAfterTest { await admin.close() }
        let redis = try await transport.connect(try TestEnvironment.redis(retryAfterConnectionLoss: false))
        closeAfterTest { await redis.close() }
        let id = try #require(try await redis.send("CLIENT", "ID").integer)
        try await admin.send("CLIENT", "KILL", "ID", id)
        let error = await #expect(throws: RedisError.self) { try await redis.send("PING") }
        #expect(error?.code == .connectionLost)
        #expect(error?.isTransient == true)
        #expect(try await redis.send("PING") == .status("PONG"))
    }

    @Test("an event-loop connection notices the server closing it while idle and reopens on the next command")
    func idleDropNoticed() async throws {
        let admin = try await RedisConnection.connect(try TestEnvironment.redis())
        closeAfterTest { await admin.close() }
        let redis = try await RedisTransport.eventLoop.connect(
            try TestEnvironment.redis(retryAfterConnectionLoss: false))
        closeAfterTest { await redis.close() }
        let id = try #require(try await redis.send("CLIENT", "ID").integer)
        try await admin.send("CLIENT", "KILL", "ID", id)
        // The close reaches the event loop at once: nothing was in flight, so nothing fails.
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await redis.send("PING") == .status("PONG"))
        #expect(try await redis.send("CLIENT", "ID").integer != id)
    }

    @Test("a reply slower than the command timeout is a transient timeout", arguments: RedisTransport.allCases)
    func commandTimeout(_ transport: RedisTransport) async throws {
        let redis = try await transport.connect(try TestEnvironment.redis(commandTimeout: 0.2))
        closeAfterTest { await redis.close() }
        let key = TestEnvironment.uniqueName("empty")
        let error = await #expect(throws: RedisError.self) { try await redis.send("BLPOP", key, 2) }
        #expect(error?.code == .timeout)
        #expect(error?.isTransient == true)
        #expect(try await redis.send("PING") == .status("PONG"))
    }

    @Test(
        "many tasks sharing one connection each get their own replies, sent as shared pipelines",
        arguments: RedisTransport.allCases)
    func automaticPipelining(_ transport: RedisTransport) async throws {
        let redis = try await transport.connect(try TestEnvironment.redis())
        closeAfterTest { await redis.close() }
        let prefix = TestEnvironment.uniqueName("pipelined")
        let echoed = try await withThrowingTaskGroup(of: (Int, [String]).self) { group in
            for index in 0..<500 {
                group.addTask {
                    let replies = try await redis.pipeline([
                        RedisCommand("SET", "\(prefix):\(index)", index, "EX", 60),
                        RedisCommand("GET", "\(prefix):\(index)"), RedisCommand("ECHO", "caller-\(index)"),
                    ])
                    return (index, replies.map { $0.string ?? "" })
                }
            }
            return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
        }
        #expect(echoed.count == 500)
        #expect(echoed.allSatisfy { index, replies in replies == ["OK", String(index), "caller-\(index)"] })
        let script = RedisScript(name: "echo-key", source: "return redis.call('GET', KEYS[1])")
        let scripted = try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0..<200 {
                group.addTask {
                    try await redis.run(script, keys: ["\(prefix):\(index)"]).string == String(index)
                }
            }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(scripted == 200, "scripts in shared pipelines too")
    }

    @Test(
        "commands laid end to end (empty and binary arguments) get their replies in place, beside other callers",
        arguments: RedisTransport.allCases)
    func commandsEndToEnd(_ transport: RedisTransport) async throws {
        let redis = try await transport.connect(try TestEnvironment.redis())
        closeAfterTest { await redis.close() }
        let prefix = TestEnvironment.uniqueName("resp")
        let binary: [UInt8] = [0, 13, 10, 36, 42, 255, 13, 10]
        var commands = RedisCommands()
        commands.reserveCapacity(bytes: 4096)
        for index in 0..<300 {
            commands.add(arguments: 5)
            commands.argument("SET")
            commands.argument(Array("\(prefix):\(index)".utf8))
            commands.argument(index % 3 == 0 ? [] : binary + Array(String(index).utf8))
            commands.argument("EX")
            commands.argument(Array("60".utf8)[...])
        }
        commands.add(RedisCommand("GET", "\(prefix):1"))
        commands.add(RedisCommand("INCR", "\(prefix):1"))
        #expect(commands.count == 302)

        async let others = withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0..<100 {
                group.addTask { try await redis.send("ECHO", "other-\(index)").string == "other-\(index)" }
            }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        let replies = try await redis.pipeline(commands)
        #expect(try await others == 100, "callers sharing the connection keep their own replies")
        #expect(replies.count == 302)
        #expect(replies.prefix(300).allSatisfy { $0 == .status("OK") })
        #expect(replies[300].bytes == binary + Array("1".utf8))
        guard case .error(let message) = replies[301] else {
            Issue.record("expected an error reply in place, got \(replies[301])")
            return
        }
        #expect(message.contains("not an integer"))
        let stored = try await redis.mget((0..<300).map { "\(prefix):\($0)" })
        let wrong = stored.enumerated().filter { index, value in
            value != (index % 3 == 0 ? [] : binary + Array(String(index).utf8))
        }
        #expect(wrong.isEmpty, "every value stored byte for byte, empty ones empty")
    }
}
