import Foundation

/// A dedicated OS thread that runs blocking C calls one after another.
///
/// hiredis, libpq and librdkafka block the calling thread while they wait on a socket.
/// Running them on Swift's cooperative threads would starve every other task (there are
/// only as many of those threads as cores), so each C handle gets an `IOThread` of its
/// own and async callers suspend until their job has run there. Jobs run in submission
/// order, which also serialises access to handles that are not thread-safe.
public final class IOThread: @unchecked Sendable {
    // Safe to share: `queue` and `state` are only touched while `condition` is locked,
    // and the thread is started once in `init`.
    private let condition = NSCondition()
    // A job's slot is emptied when it is taken, so what it captured (a COPY's rows, a
    // pipeline's commands) is freed as soon as it has run, not when the queue is compacted.
    private var queue: [(@Sendable () -> Void)?] = []
    private var head = 0
    private var state = State.running
    private var stoppedWaiters: [CheckedContinuation<Void, Never>] = []
    private let name: String

    private enum State {
        case running
        case draining
        case stopped
    }

    public init(name: String) {
        self.name = name
        // The thread holds `self` until `shutdown()` ends it: owners must call it.
        let thread = Thread {
            ThreadName.set(name)
            self.loop()
        }
        thread.name = name
        thread.stackSize = 1 << 20
        thread.start()
    }

    /// Runs `body` on this thread and returns its result to the awaiting task.
    public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, Error>) in
            let accepted = enqueue {
                continuation.resume(with: Result { try body() })
            }
            if !accepted {
                continuation.resume(throwing: IOThreadStopped(name: name))
            }
        }
    }

    /// Lets the jobs already submitted finish, then ends the thread; returns at once.
    /// Jobs submitted later are refused with `IOThreadStopped`.
    public func shutdown() {
        condition.lock()
        if state == .running { state = .draining }
        condition.broadcast()
        condition.unlock()
    }

    /// `shutdown()`, then waits until the thread has ended.
    public func stop() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            condition.lock()
            if state == .running { state = .draining }
            if state == .stopped {
                condition.unlock()
                continuation.resume()
                return
            }
            stoppedWaiters.append(continuation)
            condition.broadcast()
            condition.unlock()
        }
    }

    /// Queues `job` to run on this thread without waiting for it; false if the thread has
    /// been shut down (the job will not run).
    public func submit(_ job: @escaping @Sendable () -> Void) -> Bool {
        enqueue(job)
    }

    private func enqueue(_ job: @escaping @Sendable () -> Void) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard state == .running else { return false }
        queue.append(job)
        condition.signal()
        return true
    }

    private func loop() {
        while true {
            condition.lock()
            while head == queue.count && state == .running { condition.wait() }
            if head == queue.count {
                state = .stopped
                let waiters = stoppedWaiters
                stoppedWaiters = []
                condition.broadcast()
                condition.unlock()
                for waiter in waiters { waiter.resume() }
                return
            }
            let job = queue[head]!
            queue[head] = nil
            head += 1
            if head > 1024 && head * 2 > queue.count {
                queue.removeFirst(head)
                head = 0
            }
            condition.unlock()
            job()
        }
    }
}

/// The job was submitted after `IOThread.shutdown()`.
public struct IOThreadStopped: Error, CustomStringConvertible {
    public let name: String
    public var description: String { "I/O thread '\(name)' has been shut down" }
}
