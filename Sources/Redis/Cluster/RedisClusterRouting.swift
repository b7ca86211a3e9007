/// Which keys a command names, and how a pipeline is cut into the parts that must go to one
/// node together (a command, or a MULTI ... EXEC transaction).
enum RedisClusterRouting {
    /// The arguments of `command` that are keys.
    static func keys(of command: RedisCommand) -> [ArraySlice<UInt8>] {
        let arguments = command.arguments
        guard arguments.count > 1 else { return [] }
        switch command.name.uppercased() {
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

    /// The pipeline cut into units; a unit whose keys are in more than one slot is refused.
    static func units(of commands: [RedisCommand]) throws(RedisError) -> [Unit] {
        var units: [Unit] = []
        var index = 0
        while index < commands.count {
            var end = index + 1
            if commands[index].name.uppercased() == "MULTI" {
                while end < commands.count, commands[end - 1].name.uppercased() != "EXEC" { end += 1 }
            }
            var slot: Int?
            for command in commands[index..<end] {
                for key in keys(of: command) {
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
