/// A Lua script run with EVALSHA. Declare it once (a `static let`) and run it as often as
/// needed: each connection loads it on first use.
public struct RedisScript: Sendable, Hashable {
    /// Shown in errors and logs.
    public let name: String
    public let source: String

    public init(name: String, source: String) {
        self.name = name
        self.source = source
    }
}

extension RedisScript {
    /// EVALSHA `sha` (EVAL with the source when the SHA is not known), the key count, the
    /// keys, the arguments.
    func command(sha: String?, keys: RedisArguments, arguments: RedisArguments) -> RedisCommand {
        var command = sha.map { RedisCommand("EVALSHA", $0) } ?? RedisCommand("EVAL", source)
        command.arguments.append(keys.count)
        command.arguments.append(contentsOf: keys)
        command.arguments.append(contentsOf: arguments)
        return command
    }
}
