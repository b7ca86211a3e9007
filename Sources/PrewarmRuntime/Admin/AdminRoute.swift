import Foundation

/// One admin route of a worker. Routes that change state are `protected`: they need
/// `Authorization: Bearer $PREWARM_ADMIN_TOKEN` (401 without it) and are refused (403) when
/// no token is configured.
public struct AdminRoute: Sendable {
    public enum Method: String, Sendable {
        case get = "GET"
        case post = "POST"
        case delete = "DELETE"
    }

    public let method: Method
    /// Hummingbird's syntax: `/v1/ka/tasks/:liveId`.
    public let path: String
    public let isProtected: Bool
    public let handler: @Sendable (AdminRequest) async throws -> AdminResponse

    public init(
        _ method: Method, _ path: String, protected isProtected: Bool,
        _ handler: @escaping @Sendable (AdminRequest) async throws -> AdminResponse
    ) {
        self.method = method
        self.path = path
        self.isProtected = isProtected
        self.handler = handler
    }

    public static func get(
        _ path: String, protected isProtected: Bool = false,
        _ handler: @escaping @Sendable (AdminRequest) async throws -> AdminResponse
    ) -> AdminRoute {
        AdminRoute(.get, path, protected: isProtected, handler)
    }

    public static func post(
        _ path: String, protected isProtected: Bool = true,
        _ handler: @escaping @Sendable (AdminRequest) async throws -> AdminResponse
    ) -> AdminRoute {
        AdminRoute(.post, path, protected: isProtected, handler)
    }
}

/// A decoding error in one line: which field, and what was wrong with it.
struct DecodingProblem: CustomStringConvertible {
    let error: any Error
    init(_ error: any Error) { self.error = error }

    var description: String {
        guard let error = error as? DecodingError else { return "not JSON" }
        func path(_ context: DecodingError.Context) -> String {
            context.codingPath.map(\.stringValue).joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, let context):
            return "missing field \((context.codingPath.map(\.stringValue) + [key.stringValue]).joined(separator: "."))"
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            return "field \(path(context)) has the wrong type"
        case .dataCorrupted(let context):
            return context.codingPath.isEmpty ? "not JSON" : "field \(path(context)) is not valid"
        @unknown default:
            return "not valid"
        }
    }
}
