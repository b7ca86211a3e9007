import Foundation
import MetricsTestKit
import PrewarmRuntime
import TestSupport
import Testing

/// The alert rules that ship in `deploy/prometheus` against the code and README: no kind the
/// code raises without a rule, no rule for a kind nothing raises, every runbook link lands on
/// a README entry, and `promtool test rules` passes.
@Suite("Alert rules: one per kind, runbook entries, promtool tests")
struct AlertRulesTests {
    static let root = TestProcess.root
    static func read(_ path: String) throws -> String {
        try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)
    }

    /// Every kind literal passed to `raise(` in Sources.
    static func raisedKinds() throws -> Set<String> {
        var kinds = Set<String>()
        let sources = root.appendingPathComponent("Sources")
        let files = FileManager.default.enumerator(at: sources, includingPropertiesForKeys: nil)!
        for case let file as URL in files where file.pathExtension == "swift" {
            let text = try String(contentsOf: file, encoding: .utf8)
            for match in text.matches(of: #/\.raise\(\s*"(?<kind>[a-z0-9-]+)"/#) { kinds.insert(String(match.kind)) }
        }
        return kinds
    }

    @Test("every kind the code raises is in the catalog, and the catalog has no kind nothing raises")
    func catalogIsTheCode() throws {
        let raised = try Self.raisedKinds()
        #expect(raised.count >= 20, "the scan found the raise calls")
        #expect(raised == Set(AlertCatalog.kinds.map(\.name)))
    }

    @Test("each catalog kind has one rule on prewarm_alerts_total with its severity and summary, and a runbook entry")
    func rulePerKind() throws {
        let rules = try Self.read("deploy/prometheus/prewarm-alerts.yaml")
        let readme = try Self.read("README.md")
        for kind in AlertCatalog.kinds {
            let selector = "prewarm_alerts_total{kind=\"\(kind.name)\"}"
            #expect(rules.components(separatedBy: selector).count == 2, "one rule for \(kind.name)")
            guard let range = rules.range(of: selector) else { continue }
            let rule = rules[range.lowerBound...].prefix(900)
            #expect(rule.contains("severity: \(kind.severity)"), "\(kind.name)'s severity")
            #expect(rule.contains("summary: \"\(kind.summary)\""), "\(kind.name)'s summary")
            #expect(readme.contains("#### alert: \(kind.name)\n"), "README's runbook entry for \(kind.name)")
        }
        // Every runbook link, of the kinds' rules and the signals', lands on an entry.
        let links = rules.matches(of: #/runbook: README\.md#alert-(?<anchor>[a-z0-9-]+)/#).map { String($0.anchor) }
        #expect(links.count == AlertCatalog.kinds.count + 7, "a runbook link per rule")
        for anchor in links { #expect(readme.contains("#### alert: \(anchor)\n"), "README entry for \(anchor)") }
    }

    @Test("promtool: the rules load, and each fires on what should wake someone and not on what should not")
    func promtool() async throws {
        let directory = Self.root.appendingPathComponent("deploy/prometheus").path
        let check = try await TestProcess.runTool(
            "/usr/bin/promtool", ["check", "rules", directory + "/prewarm-alerts.yaml"])
        #expect(check.status == 0, "\(check.stderr)")
        let test = try await TestProcess.runTool(
            "/usr/bin/promtool", ["test", "rules", directory + "/prewarm-alerts.test.yaml"], timeout: .seconds(120))
        #expect(test.status == 0, "\(test.stderr)")
    }

    @Test("a worker's counters of every kind start at 0, so a rule sees the first alert as an increase")
    func countersStartAtZero() async throws {
        let metrics = TestMetrics()
        let alerts = Alerts(worker: "rules-test", logger: .init(label: "t"), metricsFactory: metrics)
        for kind in AlertCatalog.kinds {
            let counter = try? metrics.expectCounter("prewarm_alerts_total", [("kind", kind.name)])
            #expect(counter?.totalValue == 0, "\(kind.name) at 0")
        }
        alerts.raise("job-failed", "a test")
        #expect(try metrics.expectCounter("prewarm_alerts_total", [("kind", "job-failed")]).totalValue == 1)
        await alerts.close()
    }
}
