import Logging

/// A few connections to one server for callers that work at the same time (a connection
/// runs one statement, or one transaction, at a time). Connections open on first need, up
/// to `maximum`; a caller waits for a free one beyond that. A connection whose work threw
/// is kept: it reconnects by itself on its next statement.
public actor PostgresPool {
    public nonisolated let configuration: PostgresConfiguration
    public nonisolated let maximum: Int
    private let logger: Logger
    private var idle: [PostgresConnection] = []
    private var opened = 0
    /// Callers waiting for a connection: resumed with one that came back, with nil when a
    /// slot to open one freed up (a connect failed), or with an error when the pool closes.
    private var waiters: [CheckedContinuation<PostgresConnection?, any Error>] = []
    private var closed = false
    /// Connections handed out and not yet back.
    private var inUse = 0
    /// What `close` waits on: the connections in use coming back.
    private var returned: [PostgresConnection] = []
    private var drained: [CheckedContinuation<Void, Never>] = []

    public init(
        _ configuration: PostgresConfiguration, maximum: Int, logger: Logger = Logger(label: "prewarm.postgres")
    ) {
        self.configuration = configuration
        self.maximum = max(maximum, 1)
        self.logger = logger
    }

    /// A pool over one connection that is already open (and owned by the pool from now on).
    public init(_ connection: PostgresConnection, logger: Logger = Logger(label: "prewarm.postgres")) {
        self.configuration = connection.configuration
        self.maximum = 1
        self.logger = logger
        self.idle = [connection]
        self.opened = 1
    }

    /// Runs `body` with a connection of its own, returned to the pool afterwards.
    public func withConnection<T: Sendable>(
        _ body: @Sendable (PostgresConnection) async throws -> T
    ) async throws -> T {
        let connection = try await acquire()
        inUse += 1
        do {
            let value = try await body(connection)
            release(connection)
            return value
        } catch {
            release(connection)
            throw error
        }
    }

    private func acquire() async throws -> PostgresConnection {
        while true {
            guard !closed else { throw Self.closedError }
            if let connection = idle.popLast() { return connection }
            if opened < maximum {
                opened += 1
                do {
                    return try await PostgresConnection.connect(configuration, logger: logger)
                } catch {
                    opened -= 1
                    // A waiter may try in its turn (the outage may be over by then).
                    if !waiters.isEmpty { waiters.removeFirst().resume(returning: nil) }
                    throw error
                }
            }
            if let connection = try await withCheckedThrowingContinuation({ waiters.append($0) }) {
                return connection
            }
        }
    }

    private func release(_ connection: PostgresConnection) {
        inUse -= 1
        if closed {
            returned.append(connection)
            if inUse == 0 {
                for waiter in drained { waiter.resume() }
                drained = []
            }
        } else if !waiters.isEmpty {
            waiters.removeFirst().resume(returning: connection)
        } else {
            idle.append(connection)
        }
    }

    private static let closedError = PostgresError(.closed, operation: "pool", message: "the pool is closed")

    /// Closes the idle connections now, waits for the ones in use to come back and closes
    /// them too: no connection or thread is left behind.
    public func close() async {
        closed = true
        for waiter in waiters { waiter.resume(throwing: Self.closedError) }
        waiters = []
        let connections = idle
        idle = []
        for connection in connections { await connection.close() }
        if inUse > 0 { await withCheckedContinuation { drained.append($0) } }
        let back = returned
        returned = []
        for connection in back { await connection.close() }
    }
}
