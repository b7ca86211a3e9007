import Foundation

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// The shipped alert rules against the running fleet: every metric a rule of
/// `deploy/prometheus/prewarm-alerts.yaml` queries is on some pod's `/metrics`, with every
/// label the rule selects or groups by (Prometheus's own `instance` and `job` aside). A rule
/// over a metric no pod exports would watch nothing, silently. Checked after `bad-input`,
/// the scenario whose run touches every signal (dead letters included).
struct ChaosMetricsCheck {
    let rules: URL
    let ports: [Int]

    /// The checkout's rules file: the first folder above the binaries (`.build/<triple>/debug`)
    /// that holds `Package.swift`.
    static func rules(near binaries: URL) -> URL {
        var folder = binaries
        while folder.path != "/" {
            if FileManager.default.fileExists(atPath: folder.appendingPathComponent("Package.swift").path) { break }
            folder = folder.deletingLastPathComponent()
        }
        return folder.appendingPathComponent("deploy/prometheus/prewarm-alerts.yaml")
    }

    /// What is missing, one line each (empty: every rule has its metric).
    func differences() async -> [String] {
        guard let text = try? String(contentsOf: rules, encoding: .utf8) else {
            return ["the alert rules are not at \(rules.path)"]
        }
        var exported: [String: Set<String>] = [:]
        for port in ports {
            guard let url = URL(string: "http://127.0.0.1:\(port)/metrics"),
                let (data, _) = try? await URLSession.shared.data(from: url)
            else { continue }
            for (name, labels) in Self.samples(String(decoding: data, as: UTF8.self)) {
                exported[name, default: []].formUnion(labels)
            }
        }
        var differences: [String] = []
        for (metric, labels) in Self.queried(text).sorted(by: { $0.key < $1.key }) {
            guard let have = exported[metric] else {
                differences.append("alert rules query \(metric), which no pod exports")
                continue
            }
            for label in labels.subtracting(["instance", "job"]).sorted() where !have.contains(label) {
                differences.append("alert rules use label \(label) of \(metric), which its pods do not set")
            }
        }
        return differences
    }

    /// Metric name to the label names of its samples in Prometheus text.
    static func samples(_ text: String) -> [(String, Set<String>)] {
        text.split(separator: "\n").compactMap { line in
            guard !line.hasPrefix("#"), let match = line.firstMatch(of: #/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?/#)
            else { return nil }
            let labels = (match.2.map(String.init) ?? "").matches(of: #/([a-zA-Z_][a-zA-Z0-9_]*)="/#).map {
                String($0.1)
            }
            return (String(match.1), Set(labels))
        }
    }

    /// Metric name to the label names the rules' expressions select on it or group by.
    static func queried(_ rules: String) -> [String: Set<String>] {
        var queried: [String: Set<String>] = [:]
        for line in rules.split(separator: "\n") where line.trimmingCharacters(in: .whitespaces).hasPrefix("expr:") {
            let grouped = line.matches(of: #/by \(([^)]*)\)/#).flatMap {
                $0.1.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            }
            for match in line.matches(of: #/(prewarm_[a-z_]+)(\{[^}]*\})?/#) {
                let selected = (match.2.map(String.init) ?? "").matches(of: #/([a-zA-Z_][a-zA-Z0-9_]*)=~?"/#).map {
                    String($0.1)
                }
                queried[String(match.1), default: []].formUnion(selected + grouped)
            }
        }
        return queried
    }
}
