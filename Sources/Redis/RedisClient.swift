/// What callers of Redis need, whether one connection or a pool of them serves it: domain
/// code takes `any RedisClient` and never cares which.
public protocol RedisClient: Sendable {
    var configuration: RedisConfiguration { get }

    /// Writes every command before reading any reply: one round trip per chunk instead of
    /// one per command. Error replies come back in place, as Redis sends them.
    func pipeline(_ commands: [RedisCommand]) async throws -> [RedisReply]

    /// Runs a Lua script by its SHA, loading it on first use and again after the server
    /// lost it (`NOSCRIPT`). An error reply is thrown.
    func run(_ script: RedisScript, keys: RedisArguments, arguments: RedisArguments) async throws -> RedisReply

    /// Closes every connection and ends their threads. Later calls throw.
    func close() async

    /// Every key matching `pattern`, by SCAN (`count` a page); a cluster client scans every
    /// primary.
    func keys(matching pattern: String, count: Int) async throws -> [String]

    /// `keys`' indices grouped so that each group may be the keys of one script or
    /// transaction: all of them on one server; on a cluster, those of one slot (in the order
    /// each slot first appears, each group in `keys`' order).
    func atomicGroups(of keys: [String]) -> [[Int]]

    /// True when keys of different slots cannot meet in one script (a cluster).
    var splitsKeysBySlot: Bool { get }

    /// `keys`' indices grouped by the server that serves them, as far as this client knows,
    /// and on each server by slot (`atomicGroups`): the keys one script flagged
    /// `allow-cross-slot-keys` may reach (Redis 7), declaring only its first key. One server:
    /// one group. A cluster's map may be stale (a slot moving), so such a script must expect a
    /// key that is not local (an error it catches) and give it back to the caller.
    func serverGroups(of keys: [String]) -> [[[Int]]]
}

extension RedisClient {
    /// One server: any keys may meet in a script.
    public func atomicGroups(of keys: [String]) -> [[Int]] { keys.isEmpty ? [] : [Array(keys.indices)] }

    public var splitsKeysBySlot: Bool { false }

    /// One server: its slot groups (one group).
    public func serverGroups(of keys: [String]) -> [[[Int]]] { keys.isEmpty ? [] : [atomicGroups(of: keys)] }

    /// Runs `script` once per call, the calls at once; the replies in the calls' order. The
    /// first error is thrown.
    public func run(
        _ script: RedisScript, calls: [(keys: RedisArguments, arguments: RedisArguments)]
    ) async throws -> [RedisReply] {
        if calls.count == 1 { return [try await run(script, keys: calls[0].keys, arguments: calls[0].arguments)] }
        return try await withThrowingTaskGroup(of: (Int, RedisReply).self) { tasks in
            for (position, call) in calls.enumerated() {
                tasks.addTask { (position, try await self.run(script, keys: call.keys, arguments: call.arguments)) }
            }
            var replies = [RedisReply](repeating: .null, count: calls.count)
            for try await (position, reply) in tasks { replies[position] = reply }
            return replies
        }
    }

    /// Every key matching `pattern`, by SCAN (`count` a page): no KEYS, so the server is never
    /// blocked; a key may come twice if the keyspace is resized meanwhile (as SCAN promises).
    public func keys(matching pattern: String) async throws -> [String] {
        try await keys(matching: pattern, count: 1000)
    }

    /// SCAN of the one server behind this client.
    public func keys(matching pattern: String, count: Int) async throws -> [String] {
        try await scan(matching: pattern, count: count)
    }

    /// Every key of this client's server matching `pattern`.
    public func scan(matching pattern: String, count: Int) async throws -> [String] {
        var found: [String] = []
        var cursor = "0"
        repeat {
            let reply = try await send("SCAN", cursor, "MATCH", pattern, "COUNT", count).array ?? []
            guard reply.count == 2 else { throw RedisError(.server, operation: "SCAN", message: "unexpected reply") }
            cursor = reply[0].string ?? "0"
            found += (reply[1].array ?? []).compactMap(\.string)
        } while cursor != "0"
        return found
    }

    /// Sends one command; an error reply is thrown as `RedisError` with code `.server`.
    @discardableResult
    public func send(_ command: RedisCommand) async throws -> RedisReply {
        let reply = try await pipeline([command])[0]
        if case .error(let message) = reply {
            throw RedisError(.server, operation: command.name, message: message)
        }
        return reply
    }

    @discardableResult
    public func send(_ name: String, _ arguments: any RedisArgument...) async throws -> RedisReply {
        try await send(RedisCommand(name, arguments: arguments))
    }

    /// Values of `keys` in order, `nil` where a key is missing. Large key lists are sent as
    /// several MGETs in one pipeline.
    public func mget(_ keys: [String], chunkSize: Int = 500) async throws -> [[UInt8]?] {
        if keys.isEmpty { return [] }
        let commands = stride(from: 0, to: keys.count, by: chunkSize).map { start in
            RedisCommand("MGET", arguments: Array(keys[start..<min(start + chunkSize, keys.count)]))
        }
        var values: [[UInt8]?] = []
        values.reserveCapacity(keys.count)
        for reply in try await pipeline(commands) {
            guard case .array(let elements) = reply else {
                throw RedisError(.server, operation: "MGET", message: reply.string ?? "unexpected reply \(reply)")
            }
            values.append(contentsOf: elements.map(\.bytes))
        }
        return values
    }

    /// A pipeline whose replies must all be successes: the first error reply (a command
    /// refused; on a cluster, `CLUSTERDOWN` or `TRYAGAIN` while a primary fails over) is
    /// thrown, so a write is never lost in silence and a read never takes an error for an
    /// answer, and an outage reaches the caller's retrying.
    @discardableResult
    public func checkedPipeline(_ commands: [RedisCommand]) async throws -> [RedisReply] {
        let replies = try await pipeline(commands)
        for (command, reply) in zip(commands, replies) {
            if case .error(let message) = reply { throw RedisError(.server, operation: command.name, message: message) }
        }
        return replies
    }

    /// Runs `commands` as one MULTI/EXEC transaction, in one round trip, and returns their
    /// results. An error reply (a command refused when queued or failing when run) or an
    /// aborted EXEC is thrown.
    @discardableResult
    public func transaction(_ commands: [RedisCommand]) async throws -> [RedisReply] {
        let replies = try await pipeline([RedisCommand("MULTI")] + commands + [RedisCommand("EXEC")])
        guard case .array(let results) = replies.last else {
            throw RedisError(.server, operation: "EXEC", message: replies.last?.string ?? "the transaction was aborted")
        }
        for case .error(let message) in replies.dropLast() + results {
            throw RedisError(.server, operation: "MULTI", message: message)
        }
        return results
    }

    /// `run(_:keys:arguments:)` with arguments of any kind.
    @discardableResult
    public func run(
        _ script: RedisScript, keys: [any RedisArgument] = [], arguments: [any RedisArgument] = []
    ) async throws -> RedisReply {
        try await run(script, keys: RedisArguments(keys), arguments: RedisArguments(arguments))
    }
}
