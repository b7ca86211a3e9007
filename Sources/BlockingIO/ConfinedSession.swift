/// A connection to a server through a blocking C library: it can open itself (again) and
/// close. Implementations keep their C handle unguarded, relying on `ConfinedSession` to
/// call them from one thread only.
public protocol BlockingSession: AnyObject, Sendable {
    /// Connects if not connected; a no-op when the connection is up.
    func open() throws
    func disconnect()
}

/// A `BlockingSession` confined to an `IOThread`: every call reaches it on that thread, in
/// order. This is what the Redis and PostgreSQL connections are built on.
public final class ConfinedSession<Session: BlockingSession>: Sendable {
    private let session: Session
    private let thread: IOThread

    public init(_ session: Session, threadName: String) {
        self.session = session
        self.thread = IOThread(name: threadName)
    }

    /// Connects now, so a wrong address or credential is reported by the caller's start-up;
    /// on failure the thread is ended too.
    public func open() async throws {
        do {
            try await run { try $0.open() }
        } catch {
            await close()
            throw error
        }
    }

    public func run<T: Sendable>(_ body: @escaping @Sendable (Session) throws -> T) async throws -> T {
        try await thread.run { [session] in try body(session) }
    }

    /// Queues `body` on the session's thread without waiting; false if the thread has
    /// stopped.
    public func submit(_ body: @escaping @Sendable (Session) -> Void) -> Bool {
        thread.submit { [session] in body(session) }
    }

    /// Disconnects and ends the thread (waiting until it has); later calls throw
    /// `IOThreadStopped`.
    public func close() async {
        _ = try? await thread.run { [session] in session.disconnect() }
        await thread.stop()
    }
}
