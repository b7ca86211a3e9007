/// Errors of the runtime that are not about a message. Each says what went wrong in words an
/// operator can act on; none carries a secret.

/// A job name that no worker of this kind declares (a 404 on the trigger route).
public struct UnknownJob: Error, CustomStringConvertible {
    public let name: String
    public let known: [String]
    public init(_ name: String, known: [String]) {
        self.name = name
        self.known = known
    }
    public var description: String {
        "no job named '\(name)'" + (known.isEmpty ? "" : "; this worker runs \(known.joined(separator: ", "))")
    }
}

/// A topic the cluster does not have.
public struct UnknownTopic: Error, CustomStringConvertible {
    public let topic: String
    public var description: String { "topic \(topic) does not exist" }
}

/// A set of migrations that cannot be applied as declared.
public struct MigrationError: Error, CustomStringConvertible {
    public let problem: String
    public var description: String { "migrations: \(problem)" }
}

/// A command-line request that cannot be carried out as given (a bad reset target, a
/// replication factor larger than the cluster).
public struct UsageError: Error, CustomStringConvertible {
    public let problem: String
    public init(_ problem: String) { self.problem = problem }
    public var description: String { problem }
}
