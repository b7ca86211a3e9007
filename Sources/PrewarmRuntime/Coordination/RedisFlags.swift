import Foundation
import Redis

/// Success flags: one-shot markers with an expiry, set with NX so that of
/// several pods (or a replay) exactly one proceeds.
public struct RedisFlags: Sendable {
    public let redis: any RedisClient

    public init(redis: any RedisClient) {
        self.redis = redis
    }

    /// Marks success until an absolute time (e.g. a live stream's end): later duplicates
    /// are skipped until then. Returns false if the flag was already set.
    @discardableResult
    public func setSuccess(_ key: String, until expiry: Date, value: String = "1") async throws -> Bool {
        let seconds = Int(expiry.timeIntervalSince1970.rounded(.up))
        return try await redis.send("SET", key, value, "NX", "EXAT", seconds) == .status("OK")
    }

    public func isSet(_ key: String) async throws -> Bool {
        try await redis.send("EXISTS", key) == .integer(1)
    }
}
