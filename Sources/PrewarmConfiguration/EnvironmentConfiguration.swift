import Configuration
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

/// The settings of one process: flags over the environment over a worker's own defaults
/// over each setting's declared default.
///
/// The sources are swift-configuration providers (flags and worker defaults in memory, the
/// environment through `EnvironmentVariablesProvider`, which marks passwords and tokens
/// secret); what swift-configuration leaves to the application is done here: every value is
/// checked against its declaration, an unknown flag is refused by name, and `--help` is
/// printed from the same declarations.
public struct EnvironmentReader: Sendable {
    /// Every variable as the process sees it: worker defaults, then the environment, then
    /// the flags. For the `PREWARM_KAFKA_*` passthrough, which has no fixed names.
    public let values: [String: String]
    private let reader: ConfigReader

    /// The environment alone, with no flags (for `prewarmctl`, whose commands parse their
    /// own).
    public init(_ environment: [String: String]) {
        self.init(environment: environment, flags: [:], defaults: [:])
    }

    private init(environment: [String: String], flags: [String: String], defaults: [String: String]) {
        values = defaults.merging(environment) { $1 }.merging(flags) { $1 }
        let secret: @Sendable (String, String) -> Bool = { name, _ in Self.isSecret(name) }
        reader = ConfigReader(providers: [
            InMemoryProvider(name: "flags", values: Self.configValues(flags)),
            EnvironmentVariablesProvider(environmentVariables: environment, secretsSpecifier: .dynamic(secret)),
            InMemoryProvider(name: "worker defaults", values: Self.configValues(defaults)),
        ])
    }

    /// The environment with `arguments` (`--name value` or `--name=value`) applied. A flag
    /// must name a declared setting or a Kafka property (`--kafka-linger-ms 5`); anything
    /// else is refused by name. `defaults` replaces declared defaults for this process.
    public init(
        environment: [String: String], arguments: [String], declared: [SettingDescription],
        defaults: [String: String] = [:]
    ) throws {
        let known = Dictionary(declared.map { ($0.flag, $0.variable) }) { first, _ in first }
        var flags: [String: String] = [:]
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            guard argument.hasPrefix("--") else {
                throw ConfigurationError(argument, "is not a flag; flags look like --batch-max-messages 200")
            }
            let parts = argument.split(separator: "=", maxSplits: 1).map(String.init)
            let flag = parts[0]
            let variable: String
            if let declaredVariable = known[flag] {
                variable = declaredVariable
            } else if flag.hasPrefix("--kafka-"), flag.count > "--kafka-".count {
                variable = "PREWARM_" + flag.dropFirst(2).uppercased().replacingOccurrences(of: "-", with: "_")
            } else {
                throw ConfigurationError(flag, "is not a known flag (--help lists them)")
            }
            if parts.count == 2 {
                flags[variable] = parts[1]
                index += 1
            } else {
                guard index + 1 < arguments.count else { throw ConfigurationError(flag, "needs a value") }
                flags[variable] = arguments[index + 1]
                index += 2
            }
        }
        self.init(environment: environment, flags: flags, defaults: defaults)
    }

    static func isSecret(_ variable: String) -> Bool {
        variable.hasSuffix("_PASSWORD") || variable.hasSuffix("_TOKEN") || variable.hasSuffix("_SECRET")
            || variable.contains("SASL") || variable.hasSuffix("_WEBHOOK")
    }

    private static func configValues(_ values: [String: String]) -> [AbsoluteConfigKey: ConfigValue] {
        Dictionary(
            uniqueKeysWithValues: values.map {
                (key(of: $0.key), ConfigValue(.string($0.value), isSecret: isSecret($0.key)))
            })
    }

    /// One key component, which `EnvironmentVariablesProvider` encodes back to the variable.
    private static func key(of variable: String) -> AbsoluteConfigKey {
        AbsoluteConfigKey([variable.lowercased()])
    }

    /// The text given for `variable`, if any (empty counts as unset).
    public func string(_ variable: String) -> String? {
        guard
            let text = reader.string(
                forKey: ConfigKey([variable.lowercased()]), isSecret: Self.isSecret(variable)),
            !text.isEmpty
        else { return nil }
        return text
    }

    /// The setting's value, or its default; an error naming it if what was given is not
    /// accepted, or if a required setting is missing.
    public func value<Value>(_ setting: Setting<Value>) throws -> Value {
        guard let value = try optionalValue(setting) else {
            throw ConfigurationError(setting.variable, "is not set; it must be \(setting.accepted): \(setting.meaning)")
        }
        return value
    }

    /// The setting's value or default; nil when it has neither.
    public func optionalValue<Value>(_ setting: Setting<Value>) throws -> Value? {
        guard let text = string(setting.variable) else { return setting.defaultValue }
        guard let value = setting.parse(text) else {
            let shown = setting.isSecret ? "" : ", got '\(text)'"
            throw ConfigurationError(setting.variable, "must be \(setting.accepted)\(shown)")
        }
        return value
    }

    /// Checks every declared setting at once, so that a bad value stops start-up even if
    /// the code that reads it would only run hours later.
    public func check(_ declared: [SettingDescription]) throws {
        for setting in declared {
            if let text = string(setting.variable) {
                guard setting.accepts(text) else {
                    let shown = setting.isSecret ? "" : ", got '\(text)'"
                    throw ConfigurationError(setting.variable, "must be \(setting.accepted)\(shown)")
                }
            } else if setting.isRequired && setting.defaultText == nil {
                throw ConfigurationError(
                    setting.variable, "is not set; it must be \(setting.accepted): \(setting.meaning)")
            }
        }
    }
}

/// The settings every process that talks to the stores shares.
public enum CommonSettings {
    public static let logLevel = Setting<Logger.Level>(
        "PREWARM_LOG_LEVEL", default: .info,
        accepted: "one of " + Logger.Level.allCases.map(\.rawValue).joined(separator: ", "),
        "how much to log (to standard error)", parse: { Logger.Level(rawValue: $0.lowercased()) },
        render: { $0.rawValue })
    public static let timeZone = Setting<TimeZone>(
        "PREWARM_TIMEZONE", default: TimeZone(identifier: "Asia/Shanghai"),
        accepted: "an IANA time zone such as Asia/Shanghai",
        "the zone of schedules and of the day an event counts on", parse: { TimeZone(identifier: $0) },
        render: { $0.identifier })

    public static let redisHost = Setting.text("PREWARM_REDIS_HOST", default: "127.0.0.1", "Redis host (TCP)")
    public static let redisPort = Setting.integer("PREWARM_REDIS_PORT", default: 6379, in: 1...65535, "Redis port")
    public static let redisSocket = Setting.text(
        "PREWARM_REDIS_SOCKET", default: nil, "Redis over this unix socket instead of TCP", accepted: "a path")
    public static let redisUser = Setting.text("PREWARM_REDIS_USER", default: nil, "Redis ACL user")
    public static let redisPassword = Setting.text(
        "PREWARM_REDIS_PASSWORD", default: nil, "Redis password (keep it in the environment)", isSecret: true)
    public static let redisDatabase = Setting.integer("PREWARM_REDIS_DB", default: 0, in: 0...15, "Redis database")
    public static let redisClusterNodes = Setting<[RedisSlotMap.Node]>(
        "PREWARM_REDIS_CLUSTER_NODES", default: nil, accepted: "host:port,host:port,... (some of the cluster's nodes)",
        "Redis Cluster instead of one Redis: its slot map is read from these nodes (HOST, PORT, SOCKET and DB are then not used)",
        parse: { text in
            let nodes = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.map { address in
                address.lastIndex(of: ":").flatMap { colon -> RedisSlotMap.Node? in
                    guard let port = Int(address[address.index(after: colon)...]), (1...65535).contains(port),
                        colon > address.startIndex
                    else { return nil }
                    return RedisSlotMap.Node(host: String(address[..<colon]), port: port)
                }
            }
            return nodes.isEmpty || nodes.contains(where: { $0 == nil }) ? nil : nodes.compactMap { $0 }
        },
        render: { $0.map(\.description).joined(separator: ",") })
    public static let redisConnectTimeout = Setting<Double>.number(
        "PREWARM_REDIS_CONNECT_TIMEOUT", default: 2, in: 0.01...60, "seconds a Redis connect may take")
    public static let redisCommandTimeout = Setting<Double>.number(
        "PREWARM_REDIS_COMMAND_TIMEOUT", default: 5, in: 0.01...600, "seconds a Redis reply may take")

    public static let postgresURL = Setting.text(
        "PREWARM_POSTGRES_URL", default: nil, "PostgreSQL, without the password",
        accepted: "a libpq conninfo or URI, e.g. 'host=db dbname=prewarm user=prewarm'", isRequired: true)
    public static let postgresPassword = Setting.text(
        "PREWARM_POSTGRES_PASSWORD", default: nil, "PostgreSQL password, kept apart from the URL so no log shows it",
        isSecret: true)
    public static let postgresConnectTimeout = Setting.integer(
        "PREWARM_POSTGRES_CONNECT_TIMEOUT", default: 5, in: 1...300, "seconds a PostgreSQL connect may take")

    public static let kafkaBootstrapServers = Setting.text(
        "PREWARM_KAFKA_BOOTSTRAP_SERVERS", default: nil, "the Kafka brokers",
        accepted: "host:port[,host:port...]")
    public static let kafkaBootstrapFile = Setting.text(
        "PREWARM_KAFKA_BOOTSTRAP_FILE", default: nil,
        "read the broker list from this file (the dev broker writes one)", accepted: "a path")

    public static let redis: [SettingDescription] = [
        redisHost.description, redisPort.description, redisSocket.description, redisUser.description,
        redisPassword.description, redisDatabase.description, redisConnectTimeout.description,
        redisCommandTimeout.description, redisClusterNodes.description,
    ]
    public static let postgres: [SettingDescription] = [
        postgresURL.description, postgresPassword.description, postgresConnectTimeout.description,
    ]
    public static let kafka: [SettingDescription] = [kafkaBootstrapServers.description, kafkaBootstrapFile.description]
}

extension EnvironmentReader {
    public func logLevel() throws -> Logger.Level { try value(CommonSettings.logLevel) }

    public func timeZone() throws -> TimeZone { try value(CommonSettings.timeZone) }

    /// `PREWARM_REDIS_SOCKET` (a unix socket) or `PREWARM_REDIS_HOST`/`PORT`, with
    /// `USER`, `PASSWORD`, `DB`, `CONNECT_TIMEOUT` and `COMMAND_TIMEOUT`.
    public func redis(clientName: String) throws -> RedisConfiguration {
        let endpoint: RedisConfiguration.Endpoint
        if let socket = try optionalValue(CommonSettings.redisSocket) {
            endpoint = .unixSocket(path: socket)
        } else {
            endpoint = .tcp(host: try value(CommonSettings.redisHost), port: try value(CommonSettings.redisPort))
        }
        return RedisConfiguration(
            endpoint: endpoint,
            user: try optionalValue(CommonSettings.redisUser),
            password: try optionalValue(CommonSettings.redisPassword),
            database: try value(CommonSettings.redisDatabase),
            connectTimeout: try value(CommonSettings.redisConnectTimeout),
            commandTimeout: try value(CommonSettings.redisCommandTimeout),
            clientName: clientName)
    }

    /// `PREWARM_REDIS_CLUSTER_NODES`: nil for one Redis. With a database other than 0 (a
    /// cluster has only 0) it stops at start-up, naming `PREWARM_REDIS_DB`.
    public func redisCluster() throws -> [RedisSlotMap.Node]? {
        guard let nodes = try optionalValue(CommonSettings.redisClusterNodes) else { return nil }
        guard try value(CommonSettings.redisDatabase) == 0 else {
            throw ConfigurationError(
                "PREWARM_REDIS_DB", "must be 0 with PREWARM_REDIS_CLUSTER_NODES: a Redis Cluster has only database 0")
        }
        return nodes
    }

    /// `PREWARM_POSTGRES_URL` (a libpq conninfo or URI) and `PREWARM_POSTGRES_PASSWORD`.
    public func postgres(applicationName: String) throws -> PostgresConfiguration {
        let configuration = PostgresConfiguration(
            conninfo: try value(CommonSettings.postgresURL),
            password: try optionalValue(CommonSettings.postgresPassword),
            applicationName: applicationName,
            connectTimeout: try value(CommonSettings.postgresConnectTimeout))
        do {
            try configuration.validate()
        } catch let error as PostgresError {
            throw ConfigurationError("PREWARM_POSTGRES_URL", "is not a valid libpq conninfo (\(error.message))")
        }
        return configuration
    }

    /// The brokers and the librdkafka properties of one kind of client: every
    /// `PREWARM_KAFKA_*` (both kinds), then `PREWARM_KAFKA_CONSUMER_*` or
    /// `PREWARM_KAFKA_PRODUCER_*` (that kind only, so neither logs CONFWARN for the
    /// other's). `PREWARM_KAFKA_BOOTSTRAP_FILE` (written by the dev broker) may stand in
    /// for the server list.
    public func kafka(_ client: KafkaClientKind = .any) throws -> (
        bootstrapServers: String, properties: KafkaProperties
    ) {
        var shared = values.filter {
            !$0.key.hasPrefix("PREWARM_KAFKA_CONSUMER_") && !$0.key.hasPrefix("PREWARM_KAFKA_PRODUCER_")
        }
        shared["PREWARM_KAFKA_BOOTSTRAP_FILE"] = nil
        var properties = KafkaProperties.fromEnvironment(shared)
        switch client {
        case .any: break
        case .consumer: properties = properties.merging(.fromEnvironment(values, prefix: "PREWARM_KAFKA_CONSUMER_"))
        case .producer: properties = properties.merging(.fromEnvironment(values, prefix: "PREWARM_KAFKA_PRODUCER_"))
        }
        if let servers = try optionalValue(CommonSettings.kafkaBootstrapServers) {
            return (servers, properties)
        }
        if let file = try optionalValue(CommonSettings.kafkaBootstrapFile) {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8), !text.isEmpty else {
                throw ConfigurationError(
                    "PREWARM_KAFKA_BOOTSTRAP_FILE", "cannot read '\(file)'; is the dev broker running?")
            }
            return (text.trimmingCharacters(in: .whitespacesAndNewlines), properties)
        }
        throw ConfigurationError(
            "PREWARM_KAFKA_BOOTSTRAP_SERVERS", "is not set; it must hold the brokers, e.g. 'kafka-1:9092,kafka-2:9092'")
    }

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

/// Which client a set of Kafka properties is for.
public enum KafkaClientKind: Sendable {
    /// Both kinds (the admin client, tools).
    case any
    case consumer
    case producer
}
