import Foundation
import PrewarmConfiguration
import PrewarmRuntime

/// push-producer's settings, each declared once.
public enum BookRecSettings {
    public static let prewarmSchedule = Setting<Schedule>.schedule(
        "PREWARM_PUSH_PREWARM_SCHEDULE", default: .daily(hour: 0, minute: 1),
        "when the day's recommendations are pre-warmed")
    public static let prewarmDeadline = Setting<Int>.timeOfDay(
        "PREWARM_PUSH_PREWARM_DEADLINE", default: 6 * 60,
        "a pre-warm not done by this time of day (hours before the first push) raises an alert")
    public static let pushSchedule = Setting<Schedule>.schedule(
        "PREWARM_PUSH_SCHEDULE", default: .hourly(minute: 0), "when each hour's pushes are sent")
    public static let catchUpWindow = Setting<Duration>.seconds(
        "PREWARM_PUSH_CATCH_UP_WINDOW", default: 1800, in: 0...86_400,
        "a missed hourly push is sent late only within this many seconds of its hour; later it is skipped and alerted")
    public static let sendWindow = Setting<Duration>.seconds(
        "PREWARM_PUSH_SEND_WINDOW", default: 3000, in: 60...86_400,
        "an hour's pushes that failed are retried until this many seconds after its :00; then the rest are alerted")
    public static let finishedTask = Setting.text(
        "PREWARM_PUSH_FINISHED_TASK", default: "04-026-{date}-r0gdua",
        "task id of the day's \"finished series\" users in task_data ({date} is yyyymmdd)")
    public static let followingTask = Setting.text(
        "PREWARM_PUSH_FOLLOWING_TASK", default: "04-026-{date}-qk79ub",
        "task id of the day's \"following series\" users in task_data ({date} is yyyymmdd)")
    public static let experiment = Setting.text(
        "PREWARM_PUSH_EXPERIMENT", default: "later_read", "the A/B experiment a user must be in")
    public static let abURL = Setting<URL>.url(
        "PREWARM_PUSH_AB_URL", default: "http://127.0.0.1:8090/ab", "base URL of the A/B service")
    public static let recommendationURL = Setting<URL>.url(
        "PREWARM_PUSH_REC_URL", default: "http://127.0.0.1:8090/rec", "base URL of the recommendation engine")
    public static let materialURL = Setting<URL>.url(
        "PREWARM_PUSH_MATERIAL_URL", default: "http://127.0.0.1:8090/material", "base URL of the material service")
    public static let maxInFlight = Setting.integer(
        "PREWARM_PUSH_MAX_IN_FLIGHT", default: 50, in: 1...1000, "downstream calls in flight per pod, at most")
    public static let callAttempts = Setting.integer(
        "PREWARM_PUSH_CALL_ATTEMPTS", default: 3, in: 1...10,
        "tries of a downstream call that failed transiently (5xx, 429, time-out) before the user counts as failed")
    public static let breakerFailures = Setting.integer(
        "PREWARM_PUSH_BREAKER_FAILURES", default: 20, in: 1...10_000,
        "consecutive transient failures of a service that open its circuit")
    public static let breakerCoolDown = Setting<Duration>.milliseconds(
        "PREWARM_PUSH_BREAKER_OPEN_MS", default: 5000, in: 10...600_000,
        "how long an open circuit stops calls before one probe is let through")
    public static let batchSize = Setting.integer(
        "PREWARM_PUSH_BATCH_SIZE", default: 500, in: 1...5000, "users per batch message")
    public static let batchConcurrency = Setting.integer(
        "PREWARM_PUSH_BATCH_CONCURRENCY", default: 4, in: 1...64, "batches a pod works at once")
    public static let cacheTTL = Setting<Duration>.seconds(
        "PREWARM_PUSH_CACHE_TTL", default: 86_400, in: 60...7 * 86_400,
        "lifetime of a pre-warmed recommendation (rec:later_read:{uid})")
    public static let failureAlertRatio = Setting<Double>.number(
        "PREWARM_PUSH_FAILURE_ALERT_RATIO", default: 0.01, in: 0...1,
        "a pre-warm whose users failed (after the final retry) above this share of its users alerts")
    public static let missAlertRatio = Setting<Double>.number(
        "PREWARM_PUSH_MISS_ALERT_RATIO", default: 0.05, in: 0...1,
        "an hour whose cache misses pass this share of its users alerts")
    public static let failpoint = Setting.integer(
        "PREWARM_PUSH_FAILPOINT_AFTER_PUSHES", default: 0, in: 0...100_000_000,
        "tests only: the process kills itself (SIGKILL) after producing this many pushes, before marking them sent (0: never)"
    )

    public static let all: [SettingDescription] = [
        prewarmSchedule.description, prewarmDeadline.description, pushSchedule.description,
        catchUpWindow.description, sendWindow.description, finishedTask.description, followingTask.description,
        experiment.description,
        abURL.description, recommendationURL.description, materialURL.description, maxInFlight.description,
        callAttempts.description, breakerFailures.description, breakerCoolDown.description,
        batchSize.description, batchConcurrency.description, cacheTTL.description, failureAlertRatio.description,
        missAlertRatio.description, failpoint.description,
    ]
}

extension Setting where Value == Int {
    /// A time of day, `HH:MM`, as minutes after midnight.
    public static func timeOfDay(_ variable: String, default minutes: Int, _ meaning: String) -> Setting<Int> {
        Setting(
            variable, default: minutes, accepted: "a time of day, HH:MM", meaning,
            parse: { text in
                let parts = text.split(separator: ":", omittingEmptySubsequences: false)
                guard parts.count == 2, parts[1].count == 2, let hour = Int(parts[0]), let minute = Int(parts[1]),
                    (0..<24).contains(hour), (0..<60).contains(minute)
                else { return nil }
                return hour * 60 + minute
            },
            render: { String(format: "%02d:%02d", $0 / 60, $0 % 60) })
    }
}

/// The settings, read and checked.
public struct BookRecOptions: Sendable {
    public var prewarmSchedule: Schedule = .daily(hour: 0, minute: 1)
    /// Minutes after midnight.
    public var prewarmDeadline = 6 * 60
    public var pushSchedule: Schedule = .hourly(minute: 0)
    public var catchUpWindow: Duration = .seconds(1800)
    public var sendWindow: Duration = .seconds(3000)
    public var finishedTask = "04-026-{date}-r0gdua"
    public var followingTask = "04-026-{date}-qk79ub"
    public var experiment = "later_read"
    public var services = ServiceURLs()
    public var maxInFlight = 50
    public var callAttempts = 3
    public var breakerFailures = 20
    public var breakerCoolDown: Duration = .seconds(5)
    public var batchSize = 500
    public var batchConcurrency = 4
    public var cacheTTL: Duration = .seconds(86_400)
    public var failureAlertRatio = 0.01
    public var missAlertRatio = 0.05
    public var failpointAfterPushes = 0

    public struct ServiceURLs: Sendable {
        public var ab = URL(string: "http://127.0.0.1:8090/ab")!
        public var recommendation = URL(string: "http://127.0.0.1:8090/rec")!
        public var material = URL(string: "http://127.0.0.1:8090/material")!

        public init() {}

        /// All three on one simulator (`prewarmctl simulate-downstream`).
        public init(simulator base: URL) {
            ab = base.appendingPathComponent("ab")
            recommendation = base.appendingPathComponent("rec")
            material = base.appendingPathComponent("material")
        }
    }

    public init() {}

    public init(_ environment: EnvironmentReader) throws {
        typealias S = BookRecSettings
        prewarmSchedule = try environment.value(S.prewarmSchedule)
        prewarmDeadline = try environment.value(S.prewarmDeadline)
        pushSchedule = try environment.value(S.pushSchedule)
        catchUpWindow = try environment.value(S.catchUpWindow)
        sendWindow = try environment.value(S.sendWindow)
        finishedTask = try environment.value(S.finishedTask)
        followingTask = try environment.value(S.followingTask)
        experiment = try environment.value(S.experiment)
        services.ab = try environment.value(S.abURL)
        services.recommendation = try environment.value(S.recommendationURL)
        services.material = try environment.value(S.materialURL)
        maxInFlight = try environment.value(S.maxInFlight)
        callAttempts = try environment.value(S.callAttempts)
        breakerFailures = try environment.value(S.breakerFailures)
        breakerCoolDown = try environment.value(S.breakerCoolDown)
        batchSize = try environment.value(S.batchSize)
        batchConcurrency = try environment.value(S.batchConcurrency)
        cacheTTL = try environment.value(S.cacheTTL)
        failureAlertRatio = try environment.value(S.failureAlertRatio)
        missAlertRatio = try environment.value(S.missAlertRatio)
        failpointAfterPushes = try environment.value(S.failpoint)
    }

    /// The day's two task ids (`day` is yyyymmdd).
    public func tasks(day: String) -> [String] {
        [finishedTask, followingTask].map { $0.replacingOccurrences(of: "{date}", with: day) }
    }

    /// How long after the pre-warm's fire its deadline falls (the next such time of day).
    public var prewarmDeadlineAfterFire: Duration {
        guard case .daily(let hour, let minute) = prewarmSchedule else { return .seconds(6 * 3600) }
        var minutes = prewarmDeadline - (hour * 60 + minute)
        if minutes <= 0 { minutes += 24 * 60 }
        return .seconds(minutes * 60)
    }
}
