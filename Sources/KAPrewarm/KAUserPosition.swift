/// A place in a shop's users as the pre-warm reads them: by sub-shard, then by id
/// (`KACache.subShard(ofUser:)`), so a batch's keys share one or a few hash tags. A task's
/// checkpoint and a failed batch's range are positions; the cursor's text is
/// `<subShard>:<userId>`.
public struct KAUserPosition: Sendable, Codable, Comparable, CustomStringConvertible {
    public var subShard: Int64
    public var user: Int64

    /// Before every user.
    public static let start = KAUserPosition(subShard: -1, user: 0)
    /// After every user.
    public static let end = KAUserPosition(subShard: KACache.userSubShards, user: 0)

    public init(subShard: Int64, user: Int64) {
        self.subShard = subShard
        self.user = user
    }

    /// The place of `user`.
    public init(of user: Int64) {
        self.init(subShard: KACache.subShard(ofUser: user), user: user)
    }

    /// A checkpoint's cursor; nil for none or one this layout cannot read (a task checkpointed
    /// by a version that read users by id alone starts again: its keys were named otherwise).
    public init?(cursor: String?) {
        let parts = cursor?.split(separator: ":") ?? []
        guard parts.count == 2, let subShard = Int64(parts[0]), let user = Int64(parts[1]) else { return nil }
        self.init(subShard: subShard, user: user)
    }

    public var description: String { "\(subShard):\(user)" }

    public static func < (left: Self, right: Self) -> Bool {
        (left.subShard, left.user) < (right.subShard, right.user)
    }
}
