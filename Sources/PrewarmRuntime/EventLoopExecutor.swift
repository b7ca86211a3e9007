import NIOCore
import NIOPosix
import Synchronization

/// An event loop as a Swift task executor: a task that prefers it runs its jobs on the
/// loop's thread, where its channel's I/O (an HTTP connection, a Redis connection of the
/// same loop) also runs, so an awaited reply resumes the task without waking another thread.
public final class EventLoopExecutor: TaskExecutor, @unchecked Sendable {
    public let eventLoop: any EventLoop
    /// How many `withLeastBusy` bodies run on this executor now.
    private let bodies = Atomic<Int>(0)

    private init(_ eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }

    /// The executors of `MultiThreadedEventLoopGroup.singleton`, whose loops serve the
    /// runtime's HTTP pool, Hummingbird and event-loop Redis connections.
    public static let singleton = executors(of: MultiThreadedEventLoopGroup.singleton)

    /// Runs `operation` preferring the executor of `executors` with the fewest such
    /// operations running now, so that concurrent units of work (a consume loop's batches)
    /// spread evenly over the loops (`EventLoopGroup.next()` is a round robin that every other
    /// user of the group moves too).
    public static func withLeastBusy<T, Failure: Error>(
        of executors: [EventLoopExecutor], isolation: isolated (any Actor)? = #isolation,
        _ operation: () async throws(Failure) -> T
    ) async throws(Failure) -> T {
        let chosen = executors.min { $0.bodies.load(ordering: .relaxed) < $1.bodies.load(ordering: .relaxed) }!
        chosen.bodies.add(1, ordering: .relaxed)
        defer { chosen.bodies.subtract(1, ordering: .relaxed) }
        return try await withTaskExecutorPreference(chosen, isolation: isolation, operation: operation)
    }

    /// One executor per loop of `group`.
    public static func executors(of group: any EventLoopGroup) -> [EventLoopExecutor] {
        group.makeIterator().map(EventLoopExecutor.init)
    }
}

extension Array where Element == EventLoopExecutor {
    /// The executor of `eventLoop` (the first one if it is not among them).
    public func executor(of eventLoop: any EventLoop) -> EventLoopExecutor {
        first { $0.eventLoop === eventLoop } ?? self[0]
    }
}
