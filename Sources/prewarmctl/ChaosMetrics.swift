import Foundation

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// The shipped alert rules and dashboard against the running fleet: every metric a rule of
/// `deploy/prometheus/prewarm-alerts.yaml` or a panel of `deploy/grafana/prewarm.json` queries
/// is on some pod's `/metrics`, with every label the query selects or groups by (Prometheus's
/// own `instance` and `job` aside). A rule over a metric no pod exports would watch nothing,
/// silently. Checked after `bad-input`, the scenario whose run touches every signal (dead
/// letters included).
struct ChaosMetricsCheck {
    let files: [URL]
    let ports: [Int]

    /// The checkout's rules and dashboard: under the first folder above the binaries
    /// (`.build/<triple>/debug`) that holds `Package.swift`.
    static func files(near binaries: URL) -> [URL] {
        var folder = binaries
        while folder.path != "/" {
            if FileManager.default.fileExists(atPath: folder.appendingPathComponent("Package.swift").path) { break }
            folder = folder.deletingLastPathComponent()
        }
        return ["deploy/prometheus/prewarm-alerts.yaml", "deploy/grafana/prewarm.json"].map {
            folder.appendingPathComponent($0)
        }
    }

    /// What is missing, one line each (empty: every rule has its metric).
    func differences() async -> [String] {
        var text = ""
        for file in files {
            guard let content = try? String(contentsOf: file, encoding: .utf8) else {
                return ["\(file.lastPathComponent) is not at \(file.path)"]
            }
            text += content + "\n"
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
                differences.append("the alert rules or dashboard query \(metric), which no pod exports")
                continue
            }
            for label in labels.subtracting(["instance", "job"]).sorted() where !have.contains(label) {
                differences.append(
                    "the alert rules or dashboard use label \(label) of \(metric), which its pods do not set")
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

    /// Metric name to the label names the queries (`expr:` of a rule, `"expr":` of a panel)
    /// select on it or group by.
    static func queried(_ text: String) -> [String: Set<String>] {
        var queried: [String: Set<String>] = [:]
        for line in text.split(separator: "\n") {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard trimmed.hasPrefix("expr:") || trimmed.hasPrefix("\"expr\":") else { continue }
            let grouped = line.matches(of: #/by \(([^)]*)\)/#).flatMap {
                $0.1.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            }
            for match in line.matches(of: #/(prewarm_[a-z_]+)(\{[^}]*\})?/#) {
                let selected = (match.2.map(String.init) ?? "").matches(of: #/([a-zA-Z_][a-zA-Z0-9_]*)=~?\\?"/#).map {
                    String($0.1)
                }
                queried[String(match.1), default: []].formUnion(selected + grouped)
            }
        }
        return queried
    }
}
