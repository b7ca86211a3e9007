/// Which node serves each of the cluster's slots, as `CLUSTER SLOTS` reports it: per range of
/// slots its primary and replicas.
public struct RedisSlotMap: Sendable, Equatable {
    public struct Node: Hashable, Sendable, CustomStringConvertible {
        public let host: String
        public let port: Int

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        public var description: String { "\(host):\(port)" }
    }

    public struct Range: Sendable, Equatable {
        public let slots: ClosedRange<Int>
        public let primary: Node
        public let replicas: [Node]
    }

    /// Sorted by their first slot.
    public let ranges: [Range]

    public init(ranges: [Range]) {
        self.ranges = ranges.sorted { $0.slots.lowerBound < $1.slots.lowerBound }
    }

    /// The map from a `CLUSTER SLOTS` reply: `[[first, last, [host, port, id, ...], replica...], ...]`.
    /// A node announced with an empty host (`""`, Redis's "the address you reached me on")
    /// takes `reachedAt`'s host.
    public init(clusterSlots reply: RedisReply, reachedAt: Node) throws {
        guard let entries = reply.array else {
            throw RedisError(.protocolError, operation: "CLUSTER SLOTS", message: "the reply is not an array")
        }
        var ranges: [Range] = []
        for entry in entries {
            guard let fields = entry.array, fields.count >= 3, let first = fields[0].integer,
                let last = fields[1].integer, first >= 0, first <= last, last < RedisKeySlot.count
            else {
                throw RedisError(
                    .protocolError, operation: "CLUSTER SLOTS", message: "entry \(entry) is not a slot range")
            }
            var nodes: [Node] = []
            for field in fields[2...] {
                guard let node = field.array, node.count >= 2, let host = node[0].string, let port = node[1].integer
                else {
                    throw RedisError(
                        .protocolError, operation: "CLUSTER SLOTS", message: "node \(field) has no host and port")
                }
                nodes.append(Node(host: host.isEmpty || host == "?" ? reachedAt.host : host, port: Int(port)))
            }
            ranges.append(
                Range(slots: Int(first)...Int(last), primary: nodes[0], replicas: Array(nodes.dropFirst())))
        }
        self.init(ranges: ranges)
    }

    /// The primary serving `slot`; nil when no range covers it (the cluster is incomplete).
    public func primary(of slot: Int) -> Node? {
        var low = 0
        var high = ranges.count - 1
        while low <= high {
            let middle = (low + high) / 2
            let range = ranges[middle].slots
            if slot < range.lowerBound {
                high = middle - 1
            } else if slot > range.upperBound {
                low = middle + 1
            } else {
                return ranges[middle].primary
            }
        }
        return nil
    }

    /// Every primary, once.
    public var primaries: [Node] {
        var seen = Set<Node>()
        return ranges.map(\.primary).filter { seen.insert($0).inserted }
    }

    /// Slots no range covers.
    public var uncovered: Int { RedisKeySlot.count - ranges.map(\.slots.count).reduce(0, +) }
}
