import Foundation
import Kafka
import PrewarmConfiguration
import PrewarmRuntime
import ServiceLifecycle

/// ka-prewarmer, declared: consumes `live.reservation.v1` into durable pre-warm tasks
/// (offsets committed at once), works the tasks in every pod, drains their retry rows, and
/// serves the manual trigger.
public struct KAPrewarmerWorker: WorkerDefinition {
    public static let name = "ka-prewarmer"
    public static let abstract =
        "pre-warms key-account shops (shop, staff, products, marketing, users) into Redis before their live streams"
    public static let consumerGroup = TopicCatalog.liveReservation.consumerGroup
    public static let usesPostgres = true
    public static let migrations = KASchema.migrations
    public static let settings = KASettings.all

    public let routes: [TopicRoute]
    public let services: [any Service]
    public let adminRoutes: [AdminRoute]

    public init(context: WorkerContext) async throws {
        let postgres = try context.postgres
        let tasks = try context.tasks
        let retries = try context.retries
        let options = try KAOptions(context.environment)
        let cache = KACache(redis: context.redis)
        let source = KASource(pool: postgres)
        let queue = KAPrewarmQueue(
            tasks: tasks, source: source, cache: cache, retries: retries, alerts: context.alerts,
            options: options, logger: context.logger)
        let task = KAPrewarmTask(
            options: options, cache: cache, source: source, retries: retries, alerts: context.alerts,
            owner: context.owner, logger: context.logger, metricsFactory: context.metricsFactory,
            leaseMetrics: context.leaseMetrics)
        routes = [TopicRoute(TopicCatalog.liveReservation, handler: ReservationHandler(queue: queue))]
        services = [
            TaskRunner(
                kind: KAPrewarmTask.kind, queue: tasks, handler: task, concurrency: options.tasksPerPod,
                owner: context.owner, logger: context.logger, alerts: context.alerts),
            RetryDrainer(
                kind: KAPrewarmTask.kind, table: retries, logger: context.logger, alerts: context.alerts
            ) { try await task.retry($0) },
            KACacheGuard(
                tasks: tasks, cache: cache, checkEvery: options.cacheCheck, alerts: context.alerts,
                logger: context.logger),
        ]
        adminRoutes = KATrigger(queue: queue).routes
    }
}

/// `live.reservation.v1`: each reservation checked, then queued as a task; the offsets are
/// committed as soon as the tasks are in the table.
struct ReservationHandler: TopicHandler {
    let queue: KAPrewarmQueue

    func decode(_ message: KafkaMessage) throws -> Reservation {
        try Reservation.decode(message.value, key: message.key)
    }

    func handle(_ batch: [Decoded<Reservation>]) async throws {
        let reservations = batch.map(\.value)
        // Unknown shops first, before anything is queued: the loop hands the rest back.
        let shops = try await queue.shops(of: reservations)
        if reservations.contains(where: { !shops.existing.contains($0.shopID) }) {
            var errors: [Int: InvalidMessage] = [:]
            for (index, reservation) in reservations.enumerated() where !shops.existing.contains(reservation.shopID) {
                errors[index] = InvalidMessage(
                    "shop \(reservation.shopID) is not a known shop", errorClass: "UnknownShop")
            }
            throw InvalidItems(errors)
        }
        _ = try await queue.enqueue(
            reservations, shops: shops,
            sources: batch.map { "\($0.message.topic)[\($0.message.partition)]@\($0.message.offset)" })
    }
}

/// A live's pre-warm as the trigger and `GET /v1/ka/tasks/{liveId}` show it.
public struct KATaskStatus: Sendable, Codable, Equatable {
    public var liveID: Int64
    public var state: TaskState
    public var done: Int64
    public var total: Int64?
    /// Users per second, as last measured.
    public var rate: Double?
    public var etaSeconds: Double?
    /// The stream's start: the pre-warm's deadline.
    public var deadline: Date?
    public var attempts: Int
    public var lastError: String?
    public var retryPending: Int
    public var retryExhausted: Int
    public var owner: String?
    public var startedAt: Date?
    public var finishedAt: Date?

    enum CodingKeys: String, CodingKey {
        case liveID = "live_id"
        case state, done, total, rate
        case etaSeconds = "eta_seconds"
        case deadline, attempts
        case lastError = "last_error"
        case retryPending = "retry_pending"
        case retryExhausted = "retry_exhausted"
        case owner
        case startedAt = "started_at"
        case finishedAt = "finished_at"
    }

    public init(_ record: TaskRecord, retries: (pending: Int, exhausted: Int)) {
        liveID = Int64(record.key) ?? 0
        state = record.state
        done = record.done
        total = record.total
        rate = record.rate
        etaSeconds = record.etaSeconds
        deadline = record.deadline
        attempts = record.attempts
        lastError = record.lastError
        retryPending = retries.pending
        retryExhausted = retries.exhausted
        owner = record.owner
        startedAt = record.startedAt
        finishedAt = record.finishedAt
    }
}

/// The manual trigger, for a reservation that never reached the topic or a live to warm
/// again: the same task as a reservation message makes.
/// - `POST /v1/ka/prewarm` (bearer token): a reservation's JSON (`reservation_id` optional);
///   202 queued, 200 skipped (not a key account), 404 unknown shop, 409 duplicate, 400 for
///   a reservation that is not valid.
/// - `GET /v1/ka/tasks/{liveId}`: the task's state, progress, ETA and errors; 404 if none.
struct KATrigger {
    let queue: KAPrewarmQueue

    struct Request: Decodable {
        var reservationID: String?
        var liveID: Int64
        var shopID: Int64
        var startsAt: Date
        var endsAt: Date
        var force: Bool?

        enum CodingKeys: String, CodingKey {
            case reservationID = "reservation_id"
            case liveID = "live_id"
            case shopID = "shop_id"
            case startsAt = "starts_at"
            case endsAt = "ends_at"
            case force
        }
    }

    struct Answer: Encodable {
        var outcome: String
        var reason: String?
        var task: KATaskStatus?
    }

    var routes: [AdminRoute] {
        [
            .post("/v1/ka/prewarm") { request in
                let body = try request.decode(Request.self)
                let reservation = Reservation(
                    reservationID: body.reservationID ?? "manual-\(body.liveID)-\(Int(Date().timeIntervalSince1970))",
                    liveID: body.liveID, shopID: body.shopID, startsAt: body.startsAt, endsAt: body.endsAt,
                    force: body.force ?? false)
                do {
                    try reservation.validate()
                } catch let invalid as InvalidMessage {
                    throw AdminError(400, invalid.reason)
                }
                return try await answer(queue.enqueue(reservation), shop: reservation.shopID)
            },
            .get("/v1/ka/tasks/:liveId") { request in
                guard let live = Int64(request.parameters["liveId"] ?? ""), live > 0 else {
                    throw AdminError(400, "the live id must be a positive 64-bit integer")
                }
                guard let status = try await queue.status(live: live) else {
                    throw AdminError(404, "no pre-warm task for live \(live)")
                }
                return .json(200, status)
            },
        ]
    }

    private func answer(_ outcome: KAPrewarmQueue.Outcome, shop: Int64) async throws -> AdminResponse {
        switch outcome {
        case .queued(let record):
            return .json(202, Answer(outcome: outcome.name, task: KATaskStatus(record, retries: (0, 0))))
        case .duplicate(let record, let reason):
            let status = try await record.asyncMap {
                KATaskStatus($0, retries: try await queue.retries.count(taskID: $0.id))
            }
            return .json(409, Answer(outcome: outcome.name, reason: reason, task: status))
        case .skipped(let users):
            return .json(
                200,
                Answer(
                    outcome: outcome.name,
                    reason:
                        "shop \(shop) has \(users) users, fewer than PREWARM_KA_MIN_USERS (\(queue.options.minUsers))"))
        case .unknownShop:
            throw AdminError(404, "shop \(shop) is not a known shop")
        }
    }
}

extension Optional {
    fileprivate func asyncMap<T>(_ transform: (Wrapped) async throws -> T) async rethrows -> T? {
        guard let self else { return nil }
        return try await transform(self)
    }
}
