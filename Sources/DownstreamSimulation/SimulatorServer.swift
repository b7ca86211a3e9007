import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import Synchronization

/// The simulator's listening socket as a service: closed on graceful shutdown or cancellation.
struct SimulatorServer: Service {
    let simulator: DownstreamSimulator
    let host: String
    let port: Int
    let onListening: @Sendable (Int) async -> Void

    func run() async throws {
        let simulator = simulator
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(SimulatorHandler(simulator: simulator))
                }
            }
            .bind(host: host, port: port).get()
        await onListening(channel.localAddress?.port ?? port)
        // A future's `get` does not hear cancellation: closing the channel ends the wait.
        try await withTaskCancellationHandler {
            try await withGracefulShutdownHandler {
                try await channel.closeFuture.get()
            } onGracefulShutdown: {
                channel.close(promise: nil)
            }
        } onCancel: {
            channel.close(promise: nil)
        }
    }
}
