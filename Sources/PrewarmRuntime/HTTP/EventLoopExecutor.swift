import NIOCore
import NIOPosix

/// An event loop as a Swift task executor: a task that prefers it runs its jobs on the
/// loop's thread, where its channel's I/O (an HTTP connection, a Redis connection of the
/// same loop) also runs, so an awaited reply resumes the task without waking another thread.
public final class EventLoopExecutor: TaskExecutor, @unchecked Sendable {
    public let eventLoop: any EventLoop

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
