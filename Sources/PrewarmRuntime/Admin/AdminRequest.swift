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
