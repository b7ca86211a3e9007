import CoreMetrics
import Foundation
import Logging
import PrewarmRuntime

/// The A/B service's answer for one user: in the experiment unless `value` is "0".
public struct Assignment: Sendable, Codable, Equatable, FlatDecodable {
    public var experiment: String
    public var value: String
    public var traceID: String

    init?(flat: [String: String]) {
        guard let experiment = flat["experiment"], let value = flat["value"], let traceID = flat["trace_id"] else {
            return nil
        }
        self.init(experiment: experiment, value: value, traceID: traceID)
    }

    public init(experiment: String, value: String, traceID: String) {
        self.experiment = experiment
        self.value = value
        self.traceID = traceID
    }

    enum CodingKeys: String, CodingKey {
        case experiment, value
        case traceID = "trace_id"
    }

    public var isIn: Bool { value != "0" && !value.isEmpty }
}

/// The recommendation engine's answer: one book to read next.
public struct Recommendation: Sendable, Codable, Equatable, FlatDecodable {
    public var recID: String
    public var recType: String
    public var materialID: String

    init?(flat: [String: String]) {
        guard let recID = flat["rec_id"], let recType = flat["rec_type"], let materialID = flat["material_id"] else {
            return nil
        }
        self.init(recID: recID, recType: recType, materialID: materialID)
    }

    public init(recID: String, recType: String, materialID: String) {
        self.recID = recID
        self.recType = recType
        self.materialID = materialID
    }

    enum CodingKeys: String, CodingKey {
        case recID = "rec_id"
        case recType = "rec_type"
        case materialID = "material_id"
    }
}

/// The material service's answer: the push's text and image.
public struct Material: Sendable, Codable, Equatable, FlatDecodable {
    public var materialID: String
    public var title: String
    public var body: String
    public var imageURL: String

    init?(flat: [String: String]) {
        guard let materialID = flat["material_id"], let title = flat["title"], let body = flat["body"],
            let imageURL = flat["image_url"]
        else { return nil }
        self.init(materialID: materialID, title: title, body: body, imageURL: imageURL)
    }

    public init(materialID: String, title: String, body: String, imageURL: String) {
        self.materialID = materialID
        self.title = title
        self.body = body
        self.imageURL = imageURL
    }

    enum CodingKeys: String, CodingKey {
        case title, body
        case materialID = "material_id"
        case imageURL = "image_url"
    }
}

/// The three downstream services over the runtime's HTTP client (contracts in the README):
/// at most `maxInFlight` calls in flight per pod across all of them, each call with the
/// client's time-out, transient failures (5xx, 429, time-outs, an open circuit) tried again
/// with backoff up to `callAttempts` times, and a circuit breaker per service.
public final class BookRecServices: Sendable {
    public let options: BookRecOptions
    public let http: DownstreamClient
    public let inFlight: ConcurrencyLimit
    public let ab: CircuitBreaker
    public let recommendation: CircuitBreaker
    public let material: CircuitBreaker
    private let logger: Logger
    private let quiet: Logger
    private let policy: RetryPolicy
    private let abBase: String
    private let recommendationBase: String
    private let materialBase: String
    private let experiment: String

    public init(
        options: BookRecOptions, http: DownstreamClient, logger: Logger,
        metricsFactory: any MetricsFactory = NOOPMetricsHandler.instance
    ) {
        self.options = options
        self.http = http
        self.logger = logger
        // `prewarm_push_calls_in_flight_seconds_total`: its rate is the mean number of calls
        // in flight (at `maxInFlight`, the pod is held back by its budget, not by its work).
        inFlight = ConcurrencyLimit(
            options.maxInFlight,
            busyCounter: FloatingPointCounter(
                label: "prewarm_push_calls_in_flight_seconds_total", factory: metricsFactory))
        func breaker(_ name: String) -> CircuitBreaker {
            CircuitBreaker(
                service: name, failures: options.breakerFailures, coolDown: options.breakerCoolDown, logger: logger,
                metricsFactory: metricsFactory)
        }
        ab = breaker("ab")
        recommendation = breaker("recommendation")
        material = breaker("material")
        abBase = Self.base(options.services.ab)
        recommendationBase = Self.base(options.services.recommendation)
        materialBase = Self.base(options.services.material)
        experiment = percentEncoded(options.experiment)
        // Each retry is counted in the metrics and the run's failures, not logged: at a 20 %
        // error rate a log line per retry would drown the log.
        var quiet = logger
        quiet.logLevel = .error
        self.quiet = quiet
        policy = RetryPolicy(
            backoff: Backoff(initial: .milliseconds(100), maximum: .seconds(2)), maxAttempts: options.callAttempts)
    }

    static func base(_ url: URL) -> String {
        let text = url.absoluteString
        return text.hasSuffix("/") ? String(text.dropLast()) : text
    }

    public func assignment(user: Int64, project: String) async throws -> Assignment {
        let url =
            "\(abBase)/v1/experiments/\(experiment)/assignment?uid=\(user)&project=\(percentEncoded(project))"
        return try await call(url, ab, Assignment.self)
    }

    public func recommend(user: Int64, project: String, traceID: String) async throws -> Recommendation {
        let url =
            "\(recommendationBase)/v1/recommendations?uid=\(user)&project=\(percentEncoded(project))"
            + "&scene=pre-warming-process&trace_id=\(percentEncoded(traceID))"
        return try await call(url, recommendation, Recommendation.self)
    }

    public func material(user: Int64, of rec: Recommendation) async throws -> Material {
        let url =
            "\(materialBase)/v1/materials/\(percentEncoded(rec.materialID))?uid=\(user)&rec_id=\(percentEncoded(rec.recID))"
            + "&rec_type=\(percentEncoded(rec.recType))"
        return try await call(url, material, Material.self)
    }

    private func call<T: FlatDecodable & Sendable>(_ url: String, _ breaker: CircuitBreaker, _ type: T.Type)
        async throws
        -> T
    {
        let response = try await retrying("calling \(breaker.service)", policy: policy, logger: quiet) {
            // The circuit is asked when the call gets its slot: calls waiting for one when it
            // opens are refused then, not sent.
            try await breaker.call { admit in
                try await http.get(url, service: breaker.service, budget: inFlight, admit: admit)
            }
        }
        guard let value = FlatJSON.decode(T.self, response.body) else {
            throw DownstreamError(
                service: breaker.service, kind: .status(200),
                detail:
                    "an answer that is not the documented JSON: \(String(decoding: response.body.prefix(200), as: UTF8.self))"
            )
        }
        return value
    }
}
