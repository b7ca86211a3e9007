import Redis

/// What the pod and lag boards share: one hash per board, a field per pod, read whole with
/// one `HGETALL` (never a scan of the keyspace); an entry its reader refuses (written too long
/// ago, by a pod that died without a word, or unreadable) is left out and removed.
enum RedisBoard {
    /// The entries of `key` that `entry` accepts (it returns nil for the rest, which are deleted).
    static func live<Entry>(
        _ redis: any RedisClient, key: String, _ entry: (_ field: String, _ value: [UInt8]) -> Entry?
    ) async throws -> [Entry] {
        let flat = try await redis.send("HGETALL", key).array ?? []
        var live: [Entry] = []
        var stale = RedisArguments()
        stale.append(key)
        for index in stride(from: 0, to: flat.count - 1, by: 2) {
            guard let field = flat[index].string else { continue }
            if let value = flat[index + 1].bytes, let accepted = entry(field, value) {
                live.append(accepted)
            } else {
                stale.append(field)
            }
        }
        if stale.count > 1 { _ = try? await redis.send(RedisCommand("HDEL", arguments: stale)) }
        return live
    }
}
