import Foundation
import PrewarmConfiguration
import PrewarmRuntime

/// The store-scorer's settings, each declared once.
public enum ScorerSettings {
    public static let schedule = Setting<Schedule>.schedule(
        "PREWARM_SCORE_SCHEDULE", default: .daily(hour: 2, minute: 0), "when the nightly scoring runs")
    public static let deadline = Setting<Duration>.seconds(
        "PREWARM_SCORE_DEADLINE_S", default: 4 * 3600, in: 60...86_400,
        "a run not done this long after it was due raises an alert")
    public static let batchSize = Setting.integer(
        "PREWARM_SCORE_BATCH_SIZE", default: 200, in: 1...5000, "active users per batch message")
    public static let batchConcurrency = Setting.integer(
        "PREWARM_SCORE_BATCH_CONCURRENCY", default: 2, in: 1...16, "batches a pod scores at once")
    public static let windowDays = Setting.integer(
        "PREWARM_SCORE_WINDOW_DAYS", default: 30, in: 1...365, "days of visits a score is computed over")
    public static let listLength = Setting.integer(
        "PREWARM_SCORE_LIST_LENGTH", default: 4, in: 1...50, "stores in a user's list and the default list")
    public static let weightStore = Setting<Double>.number(
        "PREWARM_SCORE_WEIGHT_STORE", default: 0.5, in: 0...1, "weight of the store's share of the user's visits")
    public static let weightCategory = Setting<Double>.number(
        "PREWARM_SCORE_WEIGHT_CATEGORY", default: 0.3, in: 0...1,
        "weight of the store's category's share of the user's visits")
    public static let weightZone = Setting<Double>.number(
        "PREWARM_SCORE_WEIGHT_ZONE", default: 0.2, in: 0...1, "weight of the store's zone's share of the user's visits")
    public static let activeDays = Setting.integer(
        "PREWARM_ACTIVE_USER_DAYS", default: 7, in: 1...365,
        "days with a store entry (within the active window) that make a user active")
    public static let activeWindowDays = Setting.integer(
        "PREWARM_ACTIVE_WINDOW_DAYS", default: 30, in: 1...40,
        "the rolling window of days the active count looks at (day sets live 40 days)")
    public static let listTTL = Setting<Duration>.seconds(
        "PREWARM_SCORE_LIST_TTL_S", default: 26 * 3600, in: 60...30 * 86_400,
        "lifetime of a list: longer than the time to the next run")
    public static let ttlJitter = Setting<Duration>.seconds(
        "PREWARM_SCORE_TTL_JITTER_S", default: 7200, in: 0...86_400,
        "a uniform random extra lifetime per key, so a fleet's lists do not expire in one instant")

    public static let all: [SettingDescription] = [
        schedule.description, deadline.description, batchSize.description, batchConcurrency.description,
        windowDays.description, listLength.description, weightStore.description, weightCategory.description,
        weightZone.description, activeDays.description, activeWindowDays.description, listTTL.description,
        ttlJitter.description,
    ]
}

/// The store-scorer's settings, read and checked.
public struct ScoringOptions: Sendable {
    public var schedule: Schedule
    public var deadline: Duration
    public var batchSize: Int
    public var batchConcurrency: Int
    public var windowDays: Int
    public var listLength: Int
    public var weights: ScoringWeights
    public var activeDays: Int
    public var activeWindowDays: Int
    public var listTTL: Duration
    public var ttlJitter: Duration

    public init(
        schedule: Schedule = .daily(hour: 2, minute: 0), deadline: Duration = .seconds(4 * 3600), batchSize: Int = 200,
        batchConcurrency: Int = 2, windowDays: Int = 30, listLength: Int = 4, weights: ScoringWeights = .standard,
        activeDays: Int = 7, activeWindowDays: Int = 30, listTTL: Duration = .seconds(26 * 3600),
        ttlJitter: Duration = .seconds(7200)
    ) {
        self.schedule = schedule
        self.deadline = deadline
        self.batchSize = batchSize
        self.batchConcurrency = batchConcurrency
        self.windowDays = windowDays
        self.listLength = listLength
        self.weights = weights
        self.activeDays = activeDays
        self.activeWindowDays = activeWindowDays
        self.listTTL = listTTL
        self.ttlJitter = ttlJitter
    }

    public init(_ reader: EnvironmentReader) throws {
        self.init(
            schedule: try reader.value(ScorerSettings.schedule), deadline: try reader.value(ScorerSettings.deadline),
            batchSize: try reader.value(ScorerSettings.batchSize),
            batchConcurrency: try reader.value(ScorerSettings.batchConcurrency),
            windowDays: try reader.value(ScorerSettings.windowDays),
            listLength: try reader.value(ScorerSettings.listLength),
            weights: try ScoringWeights(
                store: try reader.value(ScorerSettings.weightStore),
                category: try reader.value(ScorerSettings.weightCategory),
                zone: try reader.value(ScorerSettings.weightZone)),
            activeDays: try reader.value(ScorerSettings.activeDays),
            activeWindowDays: try reader.value(ScorerSettings.activeWindowDays),
            listTTL: try reader.value(ScorerSettings.listTTL), ttlJitter: try reader.value(ScorerSettings.ttlJitter))
        guard activeDays <= activeWindowDays else {
            throw ConfigurationError(
                "PREWARM_ACTIVE_USER_DAYS", "must be at most PREWARM_ACTIVE_WINDOW_DAYS (\(activeWindowDays))")
        }
    }

    /// A key's lifetime: the list TTL plus uniform jitter.
    func ttlWithJitter() -> Duration {
        let jitter = ttlJitter.milliseconds
        return listTTL + .milliseconds(jitter > 0 ? Int.random(in: 0...jitter) : 0)
    }
}
