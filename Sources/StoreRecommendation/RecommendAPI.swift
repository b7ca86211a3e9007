import CoreMetrics
import EntryIngest
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOPosix
import PrewarmConfiguration
import PrewarmRuntime
import ServiceLifecycle

/// The public routes:
/// - `GET /v1/users/{userId}/store-recommendations`: the user's stores (400 for an id that
///   is not a positive 64-bit integer);
/// - `GET /v1/store-recommendations`: for anonymous users.
/// Both answer `{"source": …, "user_id": …, "stores": [{"id", "name", "category", "zone"}]}`
/// with the header `X-Prewarm-Source`, or 503 with `{"error": …}` when neither Redis nor
/// PostgreSQL can answer.
public struct RecommendAPI: Sendable {
    public let service: RecommendationService
    public let benchConstant: Bool

    public init(service: RecommendationService, benchConstant: Bool = false) {
        self.service = service
        self.benchConstant = benchConstant
    }

    public func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: MetricsMiddleware())
        router.get("/v1/users/:userId/store-recommendations") { _, context -> Response in
            let text = context.parameters.get("userId") ?? ""
            guard let user = Self.userID(text) else {
                let shown = text.count > 40 ? String(text.prefix(40)) + "… (\(text.utf8.count) bytes)" : text
                return Self.json(
                    .badRequest, ["error": "the user id must be a positive 64-bit integer, got '\(shown)'"])
            }
            return await answer(user: user)
        }
        router.get("/v1/store-recommendations") { _, _ -> Response in await answer(user: nil) }
        if benchConstant {
            // The same server answering a body of the same size with no work behind it.
            router.get("/v1/bench/constant") { request, _ -> Response in
                let size = Int(request.uri.queryParameters.get("bytes") ?? "") ?? 256
                return Response(
                    status: .ok, headers: [.contentType: "application/json"],
                    body: ResponseBody(byteBuffer: ByteBuffer(repeating: UInt8(ascii: " "), count: size)))
            }
        }
        return router
    }

    private func answer(user: Int64?) async -> Response {
        do {
            let (source, body) = try await service.recommendJSON(user: user)
            return Response(
                status: .ok,
                headers: [
                    .contentType: "application/json", .cacheControl: "no-store", Self.sourceHeader: source.rawValue,
                ],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
        } catch {
            return Self.json(.serviceUnavailable, ["error": "\(error)"])
        }
    }

    static let sourceHeader = HTTPField.Name("X-Prewarm-Source")!

    /// A user id in its one canonical form: decimal digits without a sign or a leading zero,
    /// from 1 to `Int64.max` (`+5` and `007` are not user 5 and 7).
    static func userID(_ text: String) -> Int64? {
        guard let first = text.utf8.first, first != UInt8(ascii: "0"),
            text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") })
        else { return nil }
        return Int64(text)
    }

    static func json(_ status: HTTPResponse.Status, _ value: some Encodable) -> Response {
        let body = (try? JSONEncoder().encode(value)) ?? Data()
        return Response(
            status: status, headers: [.contentType: "application/json", .cacheControl: "no-store"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }
}
