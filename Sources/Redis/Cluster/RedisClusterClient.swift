import Logging
import Synchronization

/// A Redis Cluster client: each command goes to the primary serving its key's slot, through a
/// pool per primary (either transport). A pipeline is cut by node, the parts sent at once and
/// their replies put back in the caller's order; an `MGET` whose keys span slots is split by
/// slot and its values put back in order. Any other command, transaction or script whose keys
/// span slots is refused at the call (`RedisError.Code.crossSlot`). `MOVED` refreshes the slot map
/// (one refresh at a time, at most one every `refreshInterval`) and resends; `ASK` resends
/// once to the node named, after `ASKING`, without changing the map. `TRYAGAIN`,
/// `CLUSTERDOWN` and a primary that cannot be reached are left to the caller's retrying
/// (transient); an unreachable primary also refreshes the map, so a promoted replica is found.
public final class RedisClusterClient: RedisClient {
    /// Every node's settings but its address (password, timeouts, client name); database 0.
    public let configuration: RedisConfiguration
    private let seeds: [RedisSlotMap.Node]
    private let poolSize: Int
    private let transport: RedisPool.Transport
    private let logger: Logger
    private let refreshInterval: Duration
    private let state: Mutex<State>

    private struct State {
        var map: RedisSlotMap
        var pools: [RedisSlotMap.Node: Task<RedisPool, any Error>] = [:]
        var refresh: Task<Void, Never>?
        var lastRefresh = ContinuousClock.now
        var closed = false
    }

    /// Redirects followed for one command before its last reply is given back.
    static let maxRedirects = 5

    private init(
        configuration: RedisConfiguration, seeds: [RedisSlotMap.Node], map: RedisSlotMap, poolSize: Int,
        transport: RedisPool.Transport, refreshInterval: Duration, logger: Logger
    ) {
        self.configuration = configuration
        self.seeds = seeds
        self.poolSize = poolSize
        self.transport = transport
        self.refreshInterval = refreshInterval
        self.logger = logger
        state = Mutex(State(map: map))
    }

    /// Reads the slot map from the first seed that answers; connections to the primaries are
    /// opened on first use.
    public static func connect(
        seeds: [RedisSlotMap.Node], configuration: RedisConfiguration, poolSize: Int = 2,
        transport: RedisPool.Transport = .threads, refreshInterval: Duration = .milliseconds(200),
        logger: Logger = Logger(label: "prewarm.redis.cluster")
    ) async throws -> RedisClusterClient {
        var template = configuration
        template.database = 0  // a cluster has only database 0
        let map = try await loadMap(from: seeds.shuffled(), template)
        return RedisClusterClient(
            configuration: template, seeds: seeds, map: map, poolSize: poolSize, transport: transport,
            refreshInterval: refreshInterval, logger: logger)
    }

    /// The slot map as this client last read it.
    public var slotMap: RedisSlotMap { state.withLock { $0.map } }

    private static func loadMap(from nodes: [RedisSlotMap.Node], _ template: RedisConfiguration) async throws
        -> RedisSlotMap
    {
        var failure: (any Error)?
        for node in nodes {
            do {
                var configuration = template
                configuration.endpoint = .tcp(host: node.host, port: node.port)
                let connection = try await RedisConnection.connect(configuration)
                let reply: RedisReply
                do {
                    reply = try await connection.send("CLUSTER", "SLOTS")
                } catch {
                    await connection.close()
                    throw error
                }
                await connection.close()
                let map = try RedisSlotMap(clusterSlots: reply, reachedAt: node)
                guard map.uncovered == 0 else {
                    throw RedisError(
                        .server, operation: "CLUSTER SLOTS",
                        message: "CLUSTERDOWN \(map.uncovered) slots have no primary (from \(node))")
                }
                return map
            } catch {
                failure = error
            }
        }
        throw failure ?? RedisError(.connectionFailed, operation: "CLUSTER SLOTS", message: "no seed nodes")
    }

    /// Reads the map again, unless a refresh is running (then waits for it) or one ended
    /// less than `refreshInterval` ago.
    func refreshMap() async {
        let task: Task<Void, Never>? = state.withLock { state in
            if let running = state.refresh { return running }
            guard !state.closed, ContinuousClock.now - state.lastRefresh >= refreshInterval else { return nil }
            let nodes = (state.map.primaries + state.map.ranges.flatMap(\.replicas) + seeds).shuffled()
            let template = configuration
            let task = Task {
                do {
                    let map = try await Self.loadMap(from: nodes, template)
                    self.state.withLock { $0.map = map }
                } catch {
                    self.logger.warning("Redis cluster slot map not refreshed", metadata: ["error": "\(error)"])
                }
                self.state.withLock {
                    $0.refresh = nil
                    $0.lastRefresh = .now
                }
            }
            state.refresh = task
            return task
        }
        await task?.value
    }

    /// The pool of `node`, opened on first use.
    func pool(_ node: RedisSlotMap.Node) async throws -> RedisPool {
        let task = try state.withLock { state -> Task<RedisPool, any Error> in
            guard !state.closed else {
                throw RedisError(.closed, operation: "cluster", message: "the client is closed")
            }
            if let task = state.pools[node] { return task }
            var configuration = configuration
            configuration.endpoint = .tcp(host: node.host, port: node.port)
            let (size, transport) = (poolSize, self.transport)
            let task = Task { try await RedisPool.connect(configuration, size: size, transport: transport) }
            state.pools[node] = task
            return task
        }
        do {
            return try await task.value
        } catch {
            // Not kept: the next call tries the node again (or the map no longer names it).
            state.withLock { if $0.pools[node] == task { $0.pools[node] = nil } }
            throw error
        }
    }

    private func node(of slot: Int?) throws -> RedisSlotMap.Node {
        try state.withLock { state in
            if let slot {
                guard let node = state.map.primary(of: slot) else {
                    throw RedisError(.server, operation: "cluster", message: "CLUSTERDOWN slot \(slot) has no primary")
                }
                return node
            }
            guard let any = state.map.primaries.first else {
                throw RedisError(.server, operation: "cluster", message: "CLUSTERDOWN no primary")
            }
            return any
        }
    }

    public func pipeline(_ commands: [RedisCommand]) async throws -> [RedisReply] {
        let split = RedisClusterRouting.splitMGETs(commands)
        let replies = try await route(split.commands, names: split.names)
        return split.merge(replies)
    }

    /// Sends each unit of `commands` to its node, the nodes' parts at once.
    private func route(_ commands: [RedisCommand], names: [String]) async throws -> [RedisReply] {
        let units = try RedisClusterRouting.units(of: commands, names: names)
        var byNode: [RedisSlotMap.Node: [RedisClusterRouting.Unit]] = [:]
        for unit in units { byNode[try node(of: unit.slot), default: []].append(unit) }
        var replies = [RedisReply](repeating: .null, count: commands.count)
        if byNode.count == 1, let (node, units) = byNode.first {
            // One node (a GET, a slot's script): no child task, the reply resumes the caller.
            for (index, reply) in try await send(units, of: commands, to: node) { replies[index] = reply }
            return replies
        }
        try await withThrowingTaskGroup(of: [(Int, RedisReply)].self) { group in
            for (node, units) in byNode {
                group.addTask { try await self.send(units, of: commands, to: node) }
            }
            for try await part in group {
                for (index, reply) in part { replies[index] = reply }
            }
        }
        return replies
    }

    /// Sends `units` to `node` in one pipeline, then follows the redirects of any unit.
    private func send(_ units: [RedisClusterRouting.Unit], of commands: [RedisCommand], to node: RedisSlotMap.Node)
        async throws -> [(Int, RedisReply)]
    {
        let sent = units.flatMap { commands[$0.indices] }
        let replies = try await onNode(node) { try await $0.pipeline(sent) }
        var out: [(Int, RedisReply)] = []
        var offset = 0
        for unit in units {
            var unitReplies = Array(replies[offset..<offset + unit.indices.count])
            offset += unit.indices.count
            var redirects = 0
            while redirects < Self.maxRedirects,
                let redirect = unitReplies.lazy.compactMap(RedisClusterRouting.redirect).first
            {
                redirects += 1
                let unitCommands = Array(commands[unit.indices])
                switch redirect {
                case .moved(_, let target):
                    await refreshMap()
                    unitReplies = try await onNode(target) { try await $0.pipeline(unitCommands) }
                case .ask(_, let target):
                    let answered = try await onNode(target) {
                        try await $0.pipeline([RedisCommand("ASKING")] + unitCommands)
                    }
                    unitReplies = Array(answered.dropFirst())
                }
            }
            out += zip(unit.indices, unitReplies).map { ($0, $1) }
        }
        return out
    }

    /// `body` on a pool of `node`; a node that cannot be reached refreshes the map (a failover
    /// may have promoted its replica) before the error goes to the caller.
    private func onNode<T>(_ node: RedisSlotMap.Node, _ body: (RedisPool) async throws -> T) async throws -> T {
        do {
            return try await body(try await pool(node))
        } catch let error as RedisError where error.code == .connectionFailed || error.code == .connectionLost {
            await refreshMap()
            throw error
        }
    }

    public var splitsKeysBySlot: Bool { true }

    public func atomicGroups(of keys: [String]) -> [[Int]] {
        RedisKeySlot.groups(keys.lazy.map(RedisKeySlot.of)).map(\.positions)
    }

    /// By the primary this client's map names for each slot (the slots whose primary it does
    /// not know, together: their script meets `CLUSTERDOWN`).
    public func serverGroups(of keys: [String]) -> [[[Int]]] {
        let map = slotMap
        var groups: [[[Int]]] = []
        var groupOfNode: [RedisSlotMap.Node?: Int] = [:]
        for (slot, positions) in RedisKeySlot.groups(keys.lazy.map(RedisKeySlot.of)) {
            let node = map.primary(of: slot)
            if let group = groupOfNode[node] {
                groups[group].append(positions)
            } else {
                groupOfNode[node] = groups.count
                groups.append([positions])
            }
        }
        return groups
    }

    public func run(_ script: RedisScript, keys: RedisArguments, arguments: RedisArguments) async throws -> RedisReply {
        var slot: Int?
        for index in 0..<keys.count {
            let keySlot = RedisKeySlot.of(bytes: keys[index])
            if let slot, slot != keySlot {
                throw RedisError(
                    .crossSlot, operation: script.name,
                    message:
                        "script keys in different hash slots (\(slot) and \(keySlot)): give them one hash tag, {...}")
            }
            slot = keySlot
        }
        var node = try node(of: slot)
        for _ in 0..<Self.maxRedirects {
            do {
                return try await onNode(node) { try await $0.run(script, keys: keys, arguments: arguments) }
            } catch let error as RedisError where error.code == .server {
                switch RedisClusterRouting.redirect(.error(error.message)) {
                case .moved(_, let target)?:
                    await refreshMap()
                    node = target
                case .ask(_, let target)?:
                    let reply = try await onNode(target) {
                        try await $0.pipeline([
                            RedisCommand("ASKING"), script.command(sha: nil, keys: keys, arguments: arguments),
                        ])
                    }
                    if case .error(let message) = reply[1] {
                        throw RedisError(.server, operation: script.name, message: message)
                    }
                    return reply[1]
                case nil:
                    throw error
                }
            }
        }
        return try await onNode(node) { try await $0.run(script, keys: keys, arguments: arguments) }
    }

    /// SCAN of every primary, their keys together.
    public func keys(matching pattern: String, count: Int) async throws -> [String] {
        var found: [String] = []
        for node in slotMap.primaries {
            found += try await onNode(node) { try await $0.scan(matching: pattern, count: count) }
        }
        return found
    }

    public func close() async {
        let pools = state.withLock { state in
            state.closed = true
            defer { state.pools = [:] }
            return Array(state.pools.values)
        }
        for task in pools {
            if let pool = try? await task.value { await pool.close() }
        }
    }
}
