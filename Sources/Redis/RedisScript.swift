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
