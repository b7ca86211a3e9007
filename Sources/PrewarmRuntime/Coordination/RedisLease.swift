import Foundation
import Logging
import Redis
import Synchronization

/// Thrown to a lease holder that must stop writing: the lease expired or another owner
/// took it. Checked before every write (fencing), so a holder that was paused, partitioned
/// or starved past its TTL never overwrites the new owner's work.
public struct LeaseLost: Error, CustomStringConvertible, ClassifiedError {
    public let key: String
    public let reason: String
    public var failureKind: FailureKind { .transient }
    public var description: String { "lease \(key) lost: \(reason)" }
}

/// An in-progress flag that is a lease: `SET key token NX PX ttl`, extended only by its
/// holder (compare-and-extend) and released only by its holder (compare-and-delete).
///
/// The holder's view is bounded by its own clock: the lease counts as held only until
/// `ttl` after the last confirmed acquire or renewal (minus a margin for clock drift), even
/// if no renewal was attempted since. A process that was stopped (SIGSTOP, a GC pause, a
/// frozen VM) therefore finds its lease lost when it wakes, before touching Redis.
public final class RedisLease: Sendable {
    public let key: String
    public let token: String
    public let ttl: Duration
    /// With a fence (`acquire(fence:)`), how many times the lease was taken with it, this
    /// time included: a later taker's is greater, so copies of the fence in a cluster's slots
    /// can refuse an earlier taker's writes (`FenceScript`).
    public let generation: Int64?
    private let redis: any RedisClient
    private let state: Mutex<State>

    private struct State {
        var heldUntil: ContinuousClock.Instant
        var lost: String?
    }

    static let extend = RedisScript(
        name: "lease-extend",
        source: """
            if redis.call('GET', KEYS[1]) == ARGV[1] then
              return redis.call('PEXPIRE', KEYS[1], ARGV[2])
            end
            return 0
            """)

    static let release = RedisScript(
        name: "lease-release",
        source: """
            if redis.call('GET', KEYS[1]) == ARGV[1] then
              return redis.call('DEL', KEYS[1])
            end
            return 0
            """)

    private init(
        key: String, token: String, ttl: Duration, redis: any RedisClient, heldUntil: ContinuousClock.Instant,
        generation: Int64? = nil
    ) {
        self.key = key
        self.token = token
        self.ttl = ttl
        self.generation = generation
        self.redis = redis
        self.state = Mutex(State(heldUntil: heldUntil))
    }

    /// Takes the lease if nobody holds it; nil if someone does.
    ///
    /// With `fence`, the same script also sets that key to the lease's token (expiring at
    /// `expiresAt`): a key that changes only when someone takes the lease, never when it is
    /// extended, so a holder's transactions can `WATCH` it (`EXEC` runs only if nobody took
    /// the lease since) while the lease itself is renewed beside them; and counts the taking
    /// in `{fence}:generation` (`generation`). The three keys must share a slot (a hash tag).
    public static func acquire(
        _ key: String, ttl: Duration, on redis: any RedisClient, owner: String = ProcessInfo.processInfo.hostName,
        fence: (key: String, expiresAt: Date)? = nil
    ) async throws -> RedisLease? {
        let token = "\(owner):\(UUID().uuidString)"
        let asked = ContinuousClock.now
        if let fence {
            let taken = try await redis.run(
                Self.acquireFenced, keys: [key, fence.key, fence.key + ":generation"],
                arguments: [token, ttl.milliseconds, Int64(fence.expiresAt.timeIntervalSince1970 * 1000)])
            guard let generation = taken.integer, generation > 0 else { return nil }
            return RedisLease(
                key: key, token: token, ttl: ttl, redis: redis, heldUntil: asked + safeSpan(ttl),
                generation: generation)
        } else {
            let reply = try await redis.send("SET", key, token, "NX", "PX", ttl.milliseconds)
            guard reply == .status("OK") else { return nil }
        }
        return RedisLease(key: key, token: token, ttl: ttl, redis: redis, heldUntil: asked + safeSpan(ttl))
    }

    static let acquireFenced = RedisScript(
        name: "lease-acquire-fenced",
        source: """
            if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
            redis.call('SET', KEYS[2], ARGV[1], 'PXAT', ARGV[3])
            local generation = redis.call('INCR', KEYS[3])
            if redis.call('PEXPIRETIME', KEYS[3]) < tonumber(ARGV[3]) then
              redis.call('PEXPIREAT', KEYS[3], ARGV[3])
            end
            return generation
            """)

    /// A lease this process took by other means (a script that set `key` to `token` with
    /// `ttl`, asked at `asked`).
    static func adopt(
        _ key: String, token: String, ttl: Duration, on redis: any RedisClient, asked: ContinuousClock.Instant
    ) -> RedisLease {
        RedisLease(key: key, token: token, ttl: ttl, redis: redis, heldUntil: asked + safeSpan(ttl))
    }

    /// The holder's safe window: the TTL less a margin for clock drift and reply latency.
    static func safeSpan(_ ttl: Duration) -> Duration { ttl * 0.9 }

    /// Whether the holder may still write. Purely local: no round trip.
    public var isHeld: Bool {
        state.withLock { $0.lost == nil && ContinuousClock.now < $0.heldUntil }
    }

    /// The fencing check: call before each write made under the lease.
    public func ensureHeld() throws {
        let problem: String? = state.withLock { state in
            if let lost = state.lost { return lost }
            if ContinuousClock.now >= state.heldUntil {
                state.lost = "not renewed within its TTL"
                return state.lost
            }
            return nil
        }
        if let problem { throw LeaseLost(key: key, reason: problem) }
    }

    /// Records that a write fenced by this lease's token was refused (another owner holds it):
    /// the lease stays lost. Returns the error to throw.
    public func refused(_ reason: String) -> LeaseLost {
        state.withLock { $0.lost = $0.lost ?? reason }
        return LeaseLost(key: key, reason: reason)
    }

    /// Extends the lease to a full TTL from now, if it is still ours. A lease found lost
    /// stays lost: the holder must stop, not quietly take it back.
    public func renew() async throws {
        try ensureHeld()
        let asked = ContinuousClock.now
        // If Redis is unreachable this throws; the lease then counts as held only until the
        // local deadline, which ensureHeld enforces.
        let extended = try await redis.run(Self.extend, keys: [key], arguments: [token, ttl.milliseconds])
        guard extended == .integer(1) else {
            state.withLock { $0.lost = "another owner holds it, or it expired" }
            throw LeaseLost(key: key, reason: "another owner holds it, or it expired")
        }
        state.withLock { state in
            if state.lost == nil { state.heldUntil = max(state.heldUntil, asked + Self.safeSpan(ttl)) }
        }
    }

    /// Gives the lease up if it is still ours; returns whether it was.
    @discardableResult
    public func release() async throws -> Bool {
        state.withLock { $0.lost = $0.lost ?? "released" }
        return try await redis.run(Self.release, keys: [key], arguments: [token]) == .integer(1)
    }

    /// Runs `body` while renewing the lease every third of its TTL, then releases it. The
    /// moment the lease is lost (another owner took it, or it could not be renewed before its
    /// local deadline), `body` is cancelled and `LeaseLost` is thrown; writes `body` makes
    /// through `ensureHeld` or a token-checking script are refused from then on. Renewal
    /// errors from an unreachable Redis are retried until the local deadline passes.
    public func holding<T: Sendable>(
        logger: Logger, metrics: LeaseMetrics? = nil, _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        do {
            let value = try await withThrowingTaskGroup(of: T?.self) { group in
                group.addTask { try await body() }
                group.addTask {
                    try await self.renewUntilLost(logger: logger, metrics: metrics)
                    return nil
                }
                defer { group.cancelAll() }
                // The renewer only ever ends by throwing (lost, or cancelled once body is done).
                return try await group.next()!
            }
            _ = try? await release()
            return value!
        } catch {
            _ = try? await release()
            throw error
        }
    }

    private func renewUntilLost(logger: Logger, metrics: LeaseMetrics?) async throws {
        while true {
            try await Task.sleep(for: ttl / 3)
            do {
                try await renew()
                metrics?.renewed()
            } catch let lost as LeaseLost {
                logger.error("lease lost", metadata: ["key": "\(key)", "reason": "\(lost.reason)"])
                metrics?.lost()
                throw lost
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                logger.warning("lease renewal failed, retrying", metadata: ["key": "\(key)", "error": "\(error)"])
            }
        }
    }
}
