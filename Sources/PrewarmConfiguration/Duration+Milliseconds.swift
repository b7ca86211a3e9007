/// Durations as the settings, Redis (`PX`, script arguments) and the logs count them.
extension Duration {
    /// Whole milliseconds (truncated).
    public var milliseconds: Int {
        Int(components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000)
    }

    /// In seconds, with the fraction.
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }

    public static func days(_ days: Int) -> Duration { .seconds(days * 86_400) }
}
