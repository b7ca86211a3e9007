import Logging
import ServiceLifecycle

/// Runs `check` every `interval` until the graceful shutdown (or cancellation): a guard's
/// loop. A failed round is logged (`what` failed) and the next one comes all the same.
public func repeatEvery(
    _ interval: Duration, _ what: String, logger: Logger, _ check: @escaping @Sendable () async throws -> Void
) async {
    await cancelWhenGracefulShutdown {
        while !Task.isCancelled {
            do {
                try await check()
            } catch is CancellationError {
                return
            } catch {
                logger.warning("\(what) failed", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: interval)
        }
    }
}
