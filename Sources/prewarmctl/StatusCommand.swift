import ArgumentParser
import Foundation
import Kafka
import Logging
import Postgres
import PrewarmConfiguration
import PrewarmRuntime
import Redis

/// `prewarmctl status`: job runs of the last day and every task with a progress bar, rate,
/// ETA and deadline, the retry table, consumer lag and the latest alerts. Reads Redis and
/// PostgreSQL only.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Job runs, tasks (with progress, rate, ETA, deadline), retry-table depth, consumer lag, alerts.",
        discussion: """
            Reads PREWARM_REDIS_* and, if set, PREWARM_POSTGRES_URL (tasks and the retry table). No Kafka client: \
            the lag is what the workers last published.
            """)

    @Flag(help: "Redraw in place every --interval seconds.")
    var watch = false

    @Option(help: "Seconds between redraws with --watch.")
    var interval = 2.0

    @Flag(help: "Print JSON for scripts instead of the table.")
    var json = false

    @Option(help: "Show job runs and finished tasks of this many hours.")
    var hours = 24

    func validate() throws {
        guard interval >= 0.2 else { throw ValidationError("--interval must be at least 0.2 seconds") }
        guard (1...24 * 30).contains(hours) else { throw ValidationError("--hours must be from 1 to 720") }
    }

    func run() async throws {
        let reader = EnvironmentReader(ProcessInfo.processInfo.environment)
        let redis = try await reader.connectRedis(clientName: "prewarmctl-status")
        var postgres: PostgresConnection?
        do {
            if reader.string(CommonSettings.postgresURL.variable) != nil {
                postgres = try await PostgresConnection.connect(
                    try reader.postgres(applicationName: "prewarmctl-status"))
            }
            let zone = try reader.timeZone()
            repeat {
                var status = try await FleetStatus.read(
                    redis: redis, postgres: postgres, runsSince: Date().addingTimeInterval(-Double(hours) * 3600))
                if let lag = await Self.kafkaLag(reader) {
                    status.lag = lag
                    status.lagSource = "kafka"
                }
                if json {
                    print(String(decoding: try JSONEncoder.prewarm.encode(status), as: UTF8.self))
                } else {
                    let text = StatusView(status: status, timeZone: zone).render()
                    print(watch ? "\u{1B}[H\u{1B}[2J" + text : text)
                }
                fflush(nil)
                if watch { try await Task.sleep(for: .milliseconds(Int(interval * 1000))) }
            } while watch
        } catch {
            await postgres?.close()
            await redis.close()
            throw error
        }
        await postgres?.close()
        await redis.close()
    }
}

extension StatusCommand {
    /// Every catalog group's lag from Kafka, or nil when Kafka is not configured or does not
    /// answer in a few seconds (the pods' published lag is shown then).
    static func kafkaLag(_ reader: EnvironmentReader) async -> [String: [String: Int64]]? {
        guard let kafka = try? reader.kafka(),
            let probe = try? KafkaAdmin(
                bootstrapServers: kafka.bootstrapServers, properties: kafka.properties, timeoutMilliseconds: 3000)
        else { return nil }
        let reachable = (try? await probe.brokerCount()) != nil
        await probe.close()
        guard reachable else { return nil }
        let operations = GroupOperations(
            bootstrapServers: kafka.bootstrapServers,
            properties: kafka.properties.merging(KafkaProperties(["socket.timeout.ms": "3000"])),
            logger: Logger(label: "prewarmctl-status"))
        return try? await operations.catalogLag()
    }
}

/// The status as text: one line per run and task, with a bar.
struct StatusView {
    let status: FleetStatus
    let timeZone: TimeZone

    func render() -> String {
        var lines = ["prewarm status at \(clock(status.at, seconds: true)) (\(timeZone.identifier))", ""]
        lines.append("job runs (\(status.runs.count))")
        if status.runs.isEmpty { lines.append("  none") }
        for run in status.runs.reversed() { lines.append("  " + line(run)) }
        lines.append("")
        lines.append("tasks (\(status.tasks.count))")
        if status.tasks.isEmpty { lines.append("  none") }
        for task in status.tasks { lines.append("  " + line(task)) }
        if !status.retries.isEmpty {
            lines.append("")
            lines.append(
                "retry table: "
                    + status.retries.map { "\($0.kind) \($0.state) \($0.count)" }.joined(separator: ", "))
        }
        lines.append("")
        lines.append(
            status.lagSource == "kafka"
                ? "consumer lag (committed offsets, from Kafka)" : "consumer lag (as the live pods last published it)")
        if status.lag.isEmpty { lines.append("  no worker has published its lag in the last minute") }
        for group in status.lag.keys.sorted() {
            let partitions = status.lag[group]!
            lines.append(
                "  \(pad(group, 16)) \(partitions.values.reduce(0, +)) behind over \(partitions.count) partitions")
        }
        if !status.alerts.isEmpty {
            lines.append("")
            lines.append("latest alerts")
            for alert in status.alerts {
                lines.append("  \(clock(alert.at, seconds: true))  \(pad(alert.kind, 22)) \(alert.message.prefix(110))")
            }
        }
        return lines.joined(separator: "\n")
    }

    func line(_ run: JobRunProgress) -> String {
        var parts = [pad(run.job, 16), pad(run.period, 10), pad(run.state.rawValue, 10)]
        if let total = run.itemsKnown, total > 0 || run.batchesTotal != nil {
            parts.append(bar(done: run.itemsFinished, total: total))
            parts.append("\(run.itemsFinished)/\(total) items")
        } else if run.batchesProduced > 0 {
            parts.append("\(run.batchesProduced) batches produced")
        }
        if let started = run.startedAt, !run.isFinished, run.itemsFinished > 0 {
            let rate = Double(run.itemsFinished) / max(status.at.timeIntervalSince(started), 0.001)
            parts.append(String(format: "%.0f/s", rate))
            if let total = run.itemsKnown, total > run.itemsFinished {
                parts.append("ETA " + duration(Double(total - run.itemsFinished) / max(rate, 0.001)))
            }
        }
        if let seconds = run.durationSeconds { parts.append("took " + duration(seconds)) }
        if let deadline = run.deadlineAt { parts.append("deadline " + clock(deadline)) }
        if run.batchesFailed > 0 || run.itemsFailed > 0 {
            parts.append("failed: \(run.batchesFailed) batches, \(run.itemsFailed) items")
        }
        if run.takeovers > 0 { parts.append("taken over \(run.takeovers)x") }
        if run.owesFinishStep { parts.append("finishing (its last step runs: final retries, the outcome)") }
        if let error = run.error { parts.append("error: \(error.prefix(80))") }
        return parts.joined(separator: "  ")
    }

    func line(_ entry: FleetStatus.TaskStatus) -> String {
        let task = entry.task
        var parts = [pad(task.kind, 12), pad(task.key, 14), pad(task.state.rawValue, 10)]
        if let total = task.total, total > 0 {
            parts.append(bar(done: Int(task.done), total: Int(total)))
            parts.append("\(task.done)/\(total)")
        }
        if let rate = task.rate, task.state == .running { parts.append(String(format: "%.0f/s", rate)) }
        if let eta = task.etaSeconds { parts.append("ETA " + duration(eta)) }
        if let deadline = task.deadline {
            var text = "deadline " + clock(deadline)
            if let eta = task.etaSeconds, status.at.addingTimeInterval(eta) > deadline { text += " AT RISK" }
            parts.append(text)
        }
        if task.attempts > 1 { parts.append("attempt \(task.attempts)") }
        if entry.retryPending + entry.retryExhausted > 0 {
            parts.append("retries \(entry.retryPending) pending, \(entry.retryExhausted) exhausted")
        }
        if let error = task.lastError, task.state != .succeeded { parts.append("error: \(error.prefix(80))") }
        return parts.joined(separator: "  ")
    }

    private func bar(done: Int, total: Int, width: Int = 20) -> String {
        let fraction = total > 0 ? min(Double(done) / Double(total), 1) : 1
        let filled = Int((fraction * Double(width)).rounded(.down))
        return "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "]"
            + String(format: " %3.0f%%", fraction * 100)
    }

    private func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
    }

    private func clock(_ date: Date, seconds: Bool = false) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = timeZone
        formatter.dateFormat = seconds ? "yyyy-MM-dd HH:mm:ss" : "MM-dd HH:mm"
        return formatter.string(from: date)
    }

    private func duration(_ seconds: Double) -> String {
        if seconds < 60 { return String(format: "%.1fs", seconds) }
        if seconds < 3600 { return "\(Int(seconds) / 60)m\(Int(seconds) % 60)s" }
        return "\(Int(seconds) / 3600)h\(Int(seconds) % 3600 / 60)m"
    }
}
