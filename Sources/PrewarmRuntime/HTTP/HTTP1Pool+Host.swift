import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

extension HTTP1Pool.Host {
    mutating func place(
        _ call: PooledCall, now: NIODeadline, idleTimeout: TimeAmount, maxPerHost: Int, stale: inout [any Channel]
    ) -> HTTP1Pool.Placement {
        // Behind calls already waiting, wait too: a connection goes to the first in line.
        if waiting.isEmpty {
            // A connection of the caller's event loop first: its write and the answer then
            // run on the thread the caller runs on, with no thread to wake.
            if let here = MultiThreadedEventLoopGroup.currentEventLoop,
                let index = idle.lastIndex(where: { $0.channel.eventLoop === here }),
                idle[index].channel.isActive, now - idle[index].since < idleTimeout
            {
                return .send(idle.remove(at: index).channel)
            }
            while let candidate = idle.popLast() {
                if candidate.channel.isActive, now - candidate.since < idleTimeout { return .send(candidate.channel) }
                stale.append(candidate.channel)
                open -= 1
            }
            if open < maxPerHost {
                open += 1
                return .connect
            }
        }
        waiting.append(call)
        return .wait
    }

    /// What to do with a connection after a call: the call it goes to (or, not kept, the
    /// call that may open one in its place).
    mutating func handOn(_ channel: (any Channel)?, keep: Bool, now: NIODeadline) -> (PooledCall?, Bool) {
        if keep, let channel {
            if let next = waiting.popFirst() { return (next, true) }
            idle.append(.init(channel: channel, since: now))
            return (nil, true)
        }
        open -= 1
        guard let next = waiting.popFirst() else { return (nil, false) }
        open += 1
        return (next, false)
    }
}
