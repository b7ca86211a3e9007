/// A Lua script or a record answered something the code does not know: a bug (or a record
/// written by another version) to surface, never a state to guess.
public struct UnknownReply: Error, CustomStringConvertible {
    public let what: String
    public let reply: String

    public init(what: String, reply: String) {
        self.what = what
        self.reply = reply
    }

    public var description: String { "unknown \(what): '\(reply.prefix(200))'" }
}
