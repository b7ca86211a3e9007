import Foundation
import PrewarmConfiguration

extension Setting where Value == Schedule {
    /// `daily@HH:MM` or `hourly@:MM`, in `PREWARM_TIMEZONE`.
    public static func schedule(_ variable: String, default value: Schedule, _ meaning: String) -> Setting<Schedule> {
        Setting(
            variable, default: value, accepted: "daily@HH:MM or hourly@:MM", meaning,
            parse: { try? Schedule(parsing: $0) }, render: { $0.description })
    }
}
