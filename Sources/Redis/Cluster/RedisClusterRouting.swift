/// Which keys a command names, and how a pipeline is cut into the parts that must go to one
/// node together (a command, or a MULTI ... EXEC transaction).
enum RedisClusterRouting {
    /// The arguments of `command` that are keys; `name` its name in capitals.
    static func keys(of command: RedisCommand, name: String) -> [ArraySlice<UInt8>] {
        let arguments = command.arguments
        guard arguments.count > 1 else { return [] }
        switch name {
        case "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO":
            guard arguments.count > 2,
                let count = Int(String(decoding: arguments[2], as: UTF8.self)), count >= 0,
                arguments.count >= 3 + count
            else { return [] }
            return (3..<3 + count).map { arguments[$0] }
        case "MGET", "DEL", "EXISTS", "UNLINK", "TOUCH", "WATCH", "SINTER", "SUNION", "SDIFF", "PFCOUNT":
            return (1..<arguments.count).map { arguments[$0] }
        case "MSET", "MSETNX":
            return stride(from: 1, to: arguments.count, by: 2).map { arguments[$0] }
        case "PING", "INFO", "MULTI", "EXEC", "DISCARD", "SCRIPT", "CLUSTER", "ASKING", "SCAN", "DBSIZE", "FLUSHDB",
            "FLUSHALL", "TIME", "CLIENT", "CONFIG", "KEYS", "SELECT", "AUTH", "HELLO", "ECHO", "READONLY",
            "READWRITE", "WAIT", "COMMAND", "FUNCTION":
            return []
        default:
            return [arguments[1]]
        }
    }

    /// A part of a pipeline sent to one node: the indices of its commands, in order, and
    /// the slot its keys share (nil: no keys, any node).
    struct Unit {
        var indices: Range<Int>
        var slot: Int?
    }

    /// The pipeline cut into units (`names`: the commands' names in capitals); a unit whose
    /// keys are in more than one slot is refused.
    static func units(of commands: [RedisCommand], names: [String]) throws(RedisError) -> [Unit] {
        var units: [Unit] = []
        var index = 0
        while index < commands.count {
            var end = index + 1
            if names[index] == "MULTI" {
                while end < commands.count, names[end - 1] != "EXEC" { end += 1 }
            }
            var slot: Int?
            for (command, name) in zip(commands[index..<end], names[index..<end]) {
                for key in keys(of: command, name: name) {
                    let keySlot = RedisKeySlot.of(bytes: key)
                    if let slot, slot != keySlot {
                        throw RedisError(
                            .crossSlot, operation: command.name,
                            message: "keys in different hash slots (\(slot) and \(keySlot)) in one "
                                + (end - index > 1 ? "transaction" : "command")
                                + ": give them one hash tag, {...}")
                    }
                    slot = keySlot
                }
            }
            units.append(Unit(indices: index..<end, slot: slot))
            index = end
        }
        return units
    }

    /// A pipeline whose `MGET`s over several slots (outside a transaction) are split into one
    /// `MGET` a slot, and so are its `EXISTS`, `DEL`, `UNLINK` and `TOUCH` (which count the
    /// keys); `merge` puts the values back in each `MGET`'s order and sums the counts.
    struct SplitMGETs {
        var commands: [RedisCommand]
        /// `commands`' names in capitals.
        var names: [String]
        /// Per command of the caller: the split commands' indices and the positions their
        /// values take in its reply (nil positions: the command as it was).
        var plan: [(parts: [(index: Int, positions: [Int]?)], count: Int)]

        /// The commands split one per slot whose replies are counts, summed.
        static let counting: Set<String> = ["EXISTS", "DEL", "UNLINK", "TOUCH"]

        func merge(_ replies: [RedisReply]) -> [RedisReply] {
            plan.map { entry in
                guard entry.parts.count > 1 || entry.parts.first?.positions != nil else {
                    return replies[entry.parts[0].index]
                }
                if Self.counting.contains(names[entry.parts[0].index]) {
                    var total: Int64 = 0
                    for part in entry.parts {
                        guard case .integer(let count) = replies[part.index] else { return replies[part.index] }
                        total += count
                    }
                    return .integer(total)
                }
                var values = [RedisReply](repeating: .null, count: entry.count)
                for part in entry.parts {
                    guard case .array(let partValues) = replies[part.index], let positions = part.positions,
                        partValues.count == positions.count
                    else { return replies[part.index] }  // an error reply: the MGET's
                    for (position, value) in zip(positions, partValues) { values[position] = value }
                }
                return .array(values)
            }
        }
    }

    static func splitMGETs(_ commands: [RedisCommand]) -> SplitMGETs {
        var split = SplitMGETs(commands: [], names: [], plan: [])
        var inTransaction = false
        for command in commands {
            let name = command.name.uppercased()
            if name == "MULTI" { inTransaction = true }
            defer { if name == "EXEC" || name == "DISCARD" { inTransaction = false } }
            func asItIs() {
                split.plan.append(([(split.commands.count, nil)], 1))
                split.commands.append(command)
                split.names.append(name)
            }
            guard name == "MGET" || SplitMGETs.counting.contains(name), !inTransaction else {
                asItIs()
                continue
            }
            let keys = keys(of: command, name: name)
            let groups = RedisKeySlot.groups(keys.lazy.map { RedisKeySlot.of(bytes: $0) })
            guard groups.count > 1 else {
                asItIs()
                continue
            }
            var parts: [(index: Int, positions: [Int]?)] = []
            for (_, positions) in groups {
                parts.append((split.commands.count, positions))
                var arguments = RedisArguments()
                arguments.reserveCapacity(
                    arguments: positions.count + 1, bytes: name.utf8.count + positions.reduce(0) { $0 + keys[$1].count }
                )
                arguments.append(name)
                for position in positions { arguments.append(keys[position]) }
                split.commands.append(RedisCommand(arguments: arguments))
                split.names.append(name)
            }
            split.plan.append((parts, keys.count))
        }
        return split
    }

    /// Where a `MOVED` or `ASK` error reply sends the command.
    enum Redirect: Equatable {
        case moved(slot: Int, to: RedisSlotMap.Node)
        case ask(slot: Int, to: RedisSlotMap.Node)
    }

    static func redirect(_ reply: RedisReply) -> Redirect? {
        guard case .error(let message) = reply else { return nil }
        let words = message.split(separator: " ")
        guard words.count == 3, words[0] == "MOVED" || words[0] == "ASK", let slot = Int(words[1]),
            let colon = words[2].lastIndex(of: ":"), let port = Int(words[2][words[2].index(after: colon)...])
        else { return nil }
        let node = RedisSlotMap.Node(host: String(words[2][..<colon]), port: port)
        return words[0] == "MOVED" ? .moved(slot: slot, to: node) : .ask(slot: slot, to: node)
    }
}
