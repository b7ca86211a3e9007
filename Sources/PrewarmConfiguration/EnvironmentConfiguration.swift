import Foundation
import Kafka
import Logging
import Postgres
import Redis

/// A configuration value that cannot be used. The message names the variable and what it
/// accepts; it never repeats a secret.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    public let variable: String
    public let problem: String

    public init(_ variable: String, _ problem: String) {
        self.variable = variable
        self.problem = problem
    }

    public var description: String { "\(variable): \(problem)" }
}

/// Reads `PREWARM_*` variables, checking each once, at start-up.
public struct EnvironmentReader: Sendable {
    public let values: [String: String]

    public init(_ values: [String: String]) {
        self.values = values
    }

    public func string(_ name: String) -> String? {
        guard let value = values[name], !value.isEmpty else { return nil }
        return value
    }

    public func required(_ name: String, _ meaning: String) throws -> String {
        guard let value = string(name) else { throw ConfigurationError(name, "is not set; it must hold \(meaning)") }
        return value
    }

    public func integer(_ name: String, default fallback: Int, in range: ClosedRange<Int>) throws -> Int {
        guard let text = string(name) else { return fallback }
        guard let value = Int(text), range.contains(value) else {
            throw ConfigurationError(
                name, "must be a whole number from \(range.lowerBound) to \(range.upperBound), got '\(text)'")
        }
        return value
    }

    public func seconds(_ name: String, default fallback: Double, in range: ClosedRange<Double>) throws -> Double {
        guard let text = string(name) else { return fallback }
        guard let value = Double(text), range.contains(value) else {
            throw ConfigurationError(
                name, "must be a number of seconds from \(range.lowerBound) to \(range.upperBound), got '\(text)'")
        }
        return value
    }

    /// `PREWARM_LOG_LEVEL`: trace, debug, info, notice, warning, error or critical.
    public func logLevel(default fallback: Logger.Level = .info) throws -> Logger.Level {
        guard let text = string("PREWARM_LOG_LEVEL") else { return fallback }
        guard let level = Logger.Level(rawValue: text.lowercased()) else {
            let accepted = Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")
            throw ConfigurationError("PREWARM_LOG_LEVEL", "must be one of \(accepted), got '\(text)'")
        }
        return level
    }

    /// `PREWARM_TIMEZONE`: an IANA zone such as `Asia/Shanghai`, for schedules and for the
    /// day an event counts on.
    public func timeZone(default fallback: String = "Asia/Shanghai") throws -> TimeZone {
        let name = string("PREWARM_TIMEZONE") ?? fallback
        guard let zone = TimeZone(identifier: name) else {
            throw ConfigurationError(
                "PREWARM_TIMEZONE", "must be an IANA time zone such as Asia/Shanghai, got '\(name)'")
        }
        return zone
    }

    /// `PREWARM_REDIS_SOCKET` (a unix socket) or `PREWARM_REDIS_HOST`/`PORT`, with
    /// `USER`, `PASSWORD`, `DB`, `CONNECT_TIMEOUT` and `COMMAND_TIMEOUT`.
    public func redis(clientName: String) throws -> RedisConfiguration {
        let endpoint: RedisConfiguration.Endpoint
        if let socket = string("PREWARM_REDIS_SOCKET") {
            endpoint = .unixSocket(path: socket)
        } else {
            endpoint = .tcp(
                host: string("PREWARM_REDIS_HOST") ?? "127.0.0.1",
                port: try integer("PREWARM_REDIS_PORT", default: 6379, in: 1...65535))
        }
        return RedisConfiguration(
            endpoint: endpoint,
            user: string("PREWARM_REDIS_USER"),
            password: string("PREWARM_REDIS_PASSWORD"),
            database: try integer("PREWARM_REDIS_DB", default: 0, in: 0...15),
            connectTimeout: try seconds("PREWARM_REDIS_CONNECT_TIMEOUT", default: 2, in: 0.01...60),
            commandTimeout: try seconds("PREWARM_REDIS_COMMAND_TIMEOUT", default: 5, in: 0.01...600),
            clientName: clientName)
    }

    /// `PREWARM_POSTGRES_URL` (a libpq conninfo or URI) and `PREWARM_POSTGRES_PASSWORD`.
    public func postgres(applicationName: String) throws -> PostgresConfiguration {
        let configuration = PostgresConfiguration(
            conninfo: try required(
                "PREWARM_POSTGRES_URL", "a libpq conninfo, e.g. 'host=db dbname=prewarm user=prewarm'"),
            password: string("PREWARM_POSTGRES_PASSWORD"),
            applicationName: applicationName,
            connectTimeout: try integer("PREWARM_POSTGRES_CONNECT_TIMEOUT", default: 5, in: 1...300))
        do {
            try configuration.validate()
        } catch let error as PostgresError {
            throw ConfigurationError("PREWARM_POSTGRES_URL", "is not a valid libpq conninfo (\(error.message))")
        }
        return configuration
    }

    /// `PREWARM_KAFKA_BOOTSTRAP_SERVERS` and every other `PREWARM_KAFKA_*` as librdkafka
    /// properties. `PREWARM_KAFKA_BOOTSTRAP_FILE` (written by the dev broker) may stand in
    /// for the server list.
    public func kafka() throws -> (bootstrapServers: String, properties: KafkaProperties) {
        var properties = KafkaProperties.fromEnvironment(values)
        properties["bootstrap.file"] = nil
        if let servers = string("PREWARM_KAFKA_BOOTSTRAP_SERVERS") {
            return (servers, properties)
        }
        if let file = string("PREWARM_KAFKA_BOOTSTRAP_FILE") {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8), !text.isEmpty else {
                throw ConfigurationError(
                    "PREWARM_KAFKA_BOOTSTRAP_FILE", "cannot read '\(file)'; is the dev broker running?")
            }
            return (text.trimmingCharacters(in: .whitespacesAndNewlines), properties)
        }
        throw ConfigurationError(
            "PREWARM_KAFKA_BOOTSTRAP_SERVERS", "is not set; it must hold the brokers, e.g. 'kafka-1:9092,kafka-2:9092'")
    }
}

extension EnvironmentReader {
    /// Logs to standard error at `PREWARM_LOG_LEVEL`; once per process, at start-up.
    public func bootstrapLogging() throws {
        let level = try logLevel()
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}
