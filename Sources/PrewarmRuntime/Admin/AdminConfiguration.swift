import Foundation
import Hummingbird
import Logging
import Prometheus
import ServiceLifecycle

/// Where the admin endpoints listen and who may trigger jobs.
public struct AdminConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// The host on the pod board (`PodBoard`); nil: `host`, or the host name when `host` is a wildcard.
    public var advertiseHost: String?
    /// Bearer token for routes that change state; without one they refuse.
    public var token: String?
    /// `/healthz` fails when no poll happened for this long.
    public var pollStallBound: Duration
    /// `/healthz` fails when one handler call has run this long.
    public var handlerStallBound: Duration
    /// How long each readiness check may take.
    public var checkTimeout: Duration

    public init(
        host: String = "0.0.0.0", port: Int = 8080, advertiseHost: String? = nil, token: String? = nil,
        pollStallBound: Duration = .seconds(60),
        handlerStallBound: Duration = .seconds(600), checkTimeout: Duration = .seconds(2)
    ) {
        self.host = host
        self.port = port
        self.advertiseHost = advertiseHost
        self.token = token
        self.pollStallBound = pollStallBound
        self.handlerStallBound = handlerStallBound
        self.checkTimeout = checkTimeout
    }
}

extension AdminConfiguration {
    /// `host:port` as other machines reach the admin HTTP listening on `port`.
    public func advertised(port: Int) -> String {
        let host =
            advertiseHost
            ?? (["0.0.0.0", "::", ""].contains(self.host) ? ProcessInfo.processInfo.hostName : self.host)
        return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

/// A dependency `/readyz` checks, e.g. a Redis PING.
public struct ReadinessCheck: Sendable {
    public let name: String
    public let check: @Sendable () async throws -> Void

    public init(_ name: String, _ check: @escaping @Sendable () async throws -> Void) {
        self.name = name
        self.check = check
    }
}
