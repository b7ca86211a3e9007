import Foundation

/// A request to a worker's own admin route, without Hummingbird's types.
public struct AdminRequest: Sendable {
    /// Path parameters: `liveId` of `/v1/ka/tasks/:liveId`.
    public let parameters: [String: String]
    public let query: [String: String]
    public let body: [UInt8]

    public init(parameters: [String: String] = [:], query: [String: String] = [:], body: [UInt8] = []) {
        self.parameters = parameters
        self.query = query
        self.body = body
    }

    /// The JSON body as `T`; a body that does not decode is a 400 naming the problem.
    public func decode<T: Decodable>(_ type: T.Type) throws -> T {
        do {
            return try JSONDecoder.prewarm.decode(type, from: Data(body))
        } catch {
            throw AdminError(400, "the body is not a valid request: \(DecodingProblem(error))")
        }
    }
}

/// An answer, its body always JSON encoded by `Codable` (never built by hand).
public struct AdminResponse: Sendable {
    public let status: Int
    public let body: [UInt8]
    public let contentType: String

    public init(status: Int, body: [UInt8], contentType: String = "application/json") {
        self.status = status
        self.body = body
        self.contentType = contentType
    }

    public static func json(_ status: Int, _ value: some Encodable) -> AdminResponse {
        AdminResponse(status: status, body: (try? [UInt8](JSONEncoder.prewarm.encode(value))) ?? [])
    }

    public static func error(_ status: Int, _ message: String) -> AdminResponse {
        json(status, ["error": message])
    }
}

/// Thrown by a route to answer with a status and a message.
public struct AdminError: Error, CustomStringConvertible {
    public let status: Int
    public let message: String
    public init(_ status: Int, _ message: String) {
        self.status = status
        self.message = message
    }
    public var description: String { message }
}

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
