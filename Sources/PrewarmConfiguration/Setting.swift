import Foundation

/// One setting, declared once: its variable, default, what it accepts and what it means.
/// Workers read it from the environment (a flag of the same name overrides it), check it at
/// start-up, and list it in `--help` and the README from this one declaration.
///
/// `PREWARM_ARCHIVE_AFTER_DAYS` is also `--archive-after-days`: the flag is the variable
/// without `PREWARM_`, lower-cased, with `-` for `_`.
public struct Setting<Value: Sendable>: Sendable {
    public let variable: String
    /// Used when neither the environment nor a flag sets it; nil for a setting that is
    /// optional (`value` gives nil) or required (`isRequired`).
    public let defaultValue: Value?
    /// What a value must be, in words: "1 to 3650", "daily@HH:MM or hourly@:MM".
    public let accepted: String
    /// One line for `--help`.
    public let meaning: String
    /// Never echoed: not in errors, logs or `--help` defaults. Best kept out of flags too,
    /// since flags show in `ps`.
    public let isSecret: Bool
    public let isRequired: Bool
    let parse: @Sendable (String) -> Value?
    let render: @Sendable (Value) -> String

    public init(
        _ variable: String, default defaultValue: Value?, accepted: String, _ meaning: String,
        isSecret: Bool = false, isRequired: Bool = false,
        parse: @escaping @Sendable (String) -> Value?, render: @escaping @Sendable (Value) -> String
    ) {
        precondition(variable.hasPrefix("PREWARM_"), "settings are PREWARM_* variables")
        self.variable = variable
        self.defaultValue = defaultValue
        self.accepted = accepted
        self.meaning = meaning
        self.isSecret = isSecret
        self.isRequired = isRequired
        self.parse = parse
        self.render = render
    }

    /// The flag that sets it: `--archive-after-days` for `PREWARM_ARCHIVE_AFTER_DAYS`.
    public var flag: String { Self.flag(of: variable) }

    static func flag(of variable: String) -> String {
        "--" + variable.dropFirst("PREWARM_".count).lowercased().replacingOccurrences(of: "_", with: "-")
    }

    /// The type-erased form `--help` and the settings checks work with.
    public var description: SettingDescription {
        SettingDescription(
            variable: variable, defaultText: defaultValue.map(render), accepted: accepted, meaning: meaning,
            isSecret: isSecret, isRequired: isRequired, accepts: { parse($0) != nil })
    }
}

/// A setting without its value type: what `--help` prints and what start-up checks.
public struct SettingDescription: Sendable {
    public let variable: String
    public let defaultText: String?
    public let accepted: String
    public let meaning: String
    public let isSecret: Bool
    public let isRequired: Bool
    let accepts: @Sendable (String) -> Bool

    public var flag: String { Setting<Int>.flag(of: variable) }
}

extension Setting where Value == Int {
    /// A whole number within `range`.
    public static func integer(
        _ variable: String, default value: Int?, in range: ClosedRange<Int>, _ meaning: String
    ) -> Setting<Int> {
        Setting(
            variable, default: value, accepted: "a whole number from \(range.lowerBound) to \(range.upperBound)",
            meaning, parse: { Int($0).flatMap { range.contains($0) ? $0 : nil } }, render: { String($0) })
    }
}

extension Setting where Value == Double {
    /// A number within `range`.
    public static func number(
        _ variable: String, default value: Double?, in range: ClosedRange<Double>, _ meaning: String
    ) -> Setting<Double> {
        Setting(
            variable, default: value, accepted: "a number from \(range.lowerBound) to \(range.upperBound)", meaning,
            parse: { Double($0).flatMap { range.contains($0) && $0.isFinite ? $0 : nil } }, render: { String($0) })
    }
}

extension Setting where Value == Duration {
    /// Whole seconds within `range`.
    public static func seconds(
        _ variable: String, default value: Int?, in range: ClosedRange<Int>, _ meaning: String
    ) -> Setting<Duration> {
        Setting(
            variable, default: value.map { .seconds($0) },
            accepted: "whole seconds from \(range.lowerBound) to \(range.upperBound)", meaning,
            parse: { Int($0).flatMap { range.contains($0) ? .seconds($0) : nil } },
            render: { String($0.components.seconds) })
    }

    /// Seconds with a fraction (`0.5`), within `range`.
    public static func fractionalSeconds(
        _ variable: String, default value: Double?, in range: ClosedRange<Double>, _ meaning: String
    ) -> Setting<Duration> {
        Setting(
            variable, default: value.map { .milliseconds(Int(($0 * 1000).rounded())) },
            accepted: "seconds from \(range.lowerBound) to \(range.upperBound)", meaning,
            parse: { Double($0).flatMap { range.contains($0) ? .milliseconds(Int(($0 * 1000).rounded())) : nil } },
            render: { String($0.seconds) })
    }

    /// Whole milliseconds within `range`.
    public static func milliseconds(
        _ variable: String, default value: Int?, in range: ClosedRange<Int>, _ meaning: String
    ) -> Setting<Duration> {
        Setting(
            variable, default: value.map { .milliseconds($0) },
            accepted: "whole milliseconds from \(range.lowerBound) to \(range.upperBound)", meaning,
            parse: { Int($0).flatMap { range.contains($0) ? .milliseconds($0) : nil } },
            render: {
                String($0.milliseconds)
            })
    }
}

extension Setting where Value == String {
    /// Any non-empty text.
    public static func text(
        _ variable: String, default value: String?, _ meaning: String, accepted: String = "text",
        isSecret: Bool = false, isRequired: Bool = false
    ) -> Setting<String> {
        Setting(
            variable, default: value, accepted: accepted, meaning, isSecret: isSecret, isRequired: isRequired,
            parse: { $0.isEmpty ? nil : $0 }, render: { $0 })
    }
}

extension Setting where Value == Bool {
    /// `true` or `false`.
    public static func flag(_ variable: String, default value: Bool, _ meaning: String) -> Setting<Bool> {
        Setting(
            variable, default: value, accepted: "true or false", meaning,
            parse: { ["true": true, "false": false][$0.lowercased()] }, render: { String($0) })
    }
}

extension Setting where Value == URL {
    /// An http or https URL.
    public static func url(_ variable: String, default value: String?, _ meaning: String, isSecret: Bool = false)
        -> Setting<URL>
    {
        let parse: @Sendable (String) -> URL? = { text in
            guard let url = URL(string: text), ["http", "https"].contains(url.scheme?.lowercased() ?? ""),
                url.host != nil
            else { return nil }
            return url
        }
        return Setting(
            variable, default: value.flatMap(parse), accepted: "an http:// or https:// URL", meaning,
            isSecret: isSecret, parse: parse, render: { $0.absoluteString })
    }
}
