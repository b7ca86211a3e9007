import BlockingIO
import Foundation
import Testing

@Suite("IOThread")
struct IOThreadTests {
    @Test("jobs from many tasks all run on one OS thread of its own")
    func orderAndThread() async throws {
        let thread = IOThread(name: "io-test")
        defer { thread.shutdown() }
        let names = try await withThrowingTaskGroup(of: (Int, UInt).self) { group in
            for index in 0..<50 {
                group.addTask { (index, try await thread.run { UInt(pthread_self()) }) }
            }
            return try await group.reduce(into: [Int: UInt]()) { $0[$1.0] = $1.1 }
        }
        #expect(names.count == 50)
        #expect(Set(names.values).count == 1)
        #expect(Set(names.values) != [UInt(pthread_self())])

        let order = OrderLog()
        let submitted = (0..<100).map { index in Task { try await thread.run { order.append(index) } } }
        for task in submitted { try await task.value }
        #expect(order.values.count == 100)
    }

    @Test("a blocking job does not hold up other tasks")
    func blockingJobDoesNotStarveTasks() async throws {
        let thread = IOThread(name: "io-block")
        defer { thread.shutdown() }
        let release = DispatchSemaphore(value: 0)
        let blocked = Task { try await thread.run { release.wait() } }
        // With the job parked on the I/O thread, ordinary tasks still run on every core.
        let sum = await withTaskGroup(of: Int.self) { group in
            for value in 1...100 { group.addTask { value } }
            return await group.reduce(0, +)
        }
        #expect(sum == 5050)
        release.signal()
        try await blocked.value
    }

    @Test("errors reach the caller; after shutdown new jobs are refused")
    func errorsAndShutdown() async throws {
        struct Boom: Error {}
        let thread = IOThread(name: "io-stop")
        await #expect(throws: Boom.self) { try await thread.run { throw Boom() } }
        #expect(try await thread.run { 7 } == 7)
        thread.shutdown()
        await #expect(throws: IOThreadStopped.self) { try await thread.run { 1 } }
    }

    @Test("what a job captured is freed once it has run, not kept in the queue")
    func finishedJobsAreReleased() async throws {
        final class Payload: Sendable {}
        let thread = IOThread(name: "test-release")
        weak var released: Payload?
        for _ in 0..<10 {
            let payload = Payload()
            released = payload
            try await thread.run { _ = payload }
        }
        var waited = 0
        while released != nil && waited < 100 {
            try await Task.sleep(for: .milliseconds(10))
            waited += 1
        }
        #expect(released == nil, "the last job's capture is still alive")
        thread.shutdown()
    }
}

final class OrderLog: @unchecked Sendable {
    // Only appended to from the single I/O thread under test, read after all jobs finished.
    private(set) var values: [Int] = []
    func append(_ value: Int) { values.append(value) }
}

@Suite("Child processes")
struct ChildProcessTests {
    @Test("a child gets no descriptor of ours beyond 0-2: closing our end of a pipe reaches its reader at once")
    func noInheritedDescriptors() async throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        let child = try ChildProcess.spawn("/bin/sleep", ["5"], environment: [:])
        close(fds[1])
        var poller = pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0)
        let ready = poll(&poller, 1, 2000)
        var byte: UInt8 = 0
        #expect(ready == 1 && read(fds[0], &byte, 1) == 0, "end of file: the child did not hold the write end")
        close(fds[0])
        child.signal(SIGKILL)
        #expect(try await child.wait(timeout: .seconds(5)) == 128 + SIGKILL)
    }

    @Test("once reaped, a child answers the same status and takes no more signals (its pid may be reused)")
    func reapedOnce() async throws {
        let child = try ChildProcess.spawn("/bin/sh", ["-c", "exit 3"], environment: [:])
        #expect(try await child.wait(timeout: .seconds(5)) == 3)
        #expect(child.exitStatus() == 3)
        child.signal(SIGTERM)  // would go to whatever process has the pid now
        #expect(try await child.wait(timeout: .seconds(1)) == 3)
    }
}
