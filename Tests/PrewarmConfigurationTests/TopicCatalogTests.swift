import Foundation
import PrewarmConfiguration
import Testing

@Suite("Topic catalog")
struct TopicCatalogTests {
    /// The summary table of topics.md: topic -> (partitions, consumer group, DLQ column).
    static func documentedTopics() throws -> [String: (partitions: Int, group: String, dlq: String)] {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("topics.md"), encoding: .utf8)
        var topics: [String: (Int, String, String)] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("| `") {
            let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count >= 6, let partitions = Int(cells[2]) else { continue }
            topics[cells[0].trimmingCharacters(in: ["`"])] = (partitions, cells[4], cells[5])
        }
        return topics
    }

    @Test("topics.md lists exactly the catalog's topics, with the same partitions, groups and DLQs")
    func documentationMatchesCode() throws {
        let documented = try Self.documentedTopics()
        let catalog = Dictionary(uniqueKeysWithValues: TopicCatalog.all.map { ($0.name, $0.partitions) })
        #expect(Set(documented.keys) == Set(catalog.keys))
        for (name, partitions) in catalog {
            #expect(documented[name]?.partitions == partitions, "partitions of \(name)")
        }
        for spec in TopicCatalog.sources {
            let row = try #require(documented[spec.name])
            if let group = spec.consumerGroup { #expect(row.group == "`\(group)`", "consumer group of \(spec.name)") }
            if let dlq = spec.deadLetterTopic { #expect(row.dlq == "`\(dlq)`", "DLQ of \(spec.name)") }
        }
    }
}
