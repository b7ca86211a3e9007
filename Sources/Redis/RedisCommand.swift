/// Something that can be a command argument. Redis arguments are byte strings.
public protocol RedisArgument: Sendable {
    /// Appends the argument's bytes.
    func appendRedisBytes(to bytes: inout [UInt8])
}

extension String: RedisArgument {
    public func appendRedisBytes(to bytes: inout [UInt8]) { bytes.append(contentsOf: utf8) }
}

extension Substring: RedisArgument {
    public func appendRedisBytes(to bytes: inout [UInt8]) { bytes.append(contentsOf: utf8) }
}

extension Int: RedisArgument {
    public func appendRedisBytes(to bytes: inout [UInt8]) { Int64(self).appendRedisBytes(to: &bytes) }
}

extension Int64: RedisArgument {
    /// The decimal digits, written straight into the buffer (no `String` in between).
    public func appendRedisBytes(to bytes: inout [UInt8]) {
        if self < 0 { bytes.append(0x2D) }
        var magnitude = self.magnitude
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: room for 20 digits
        withUnsafeMutableBytes(of: &digits) { buffer in
            var index = buffer.count
            repeat {
                index -= 1
                buffer[index] = UInt8(truncatingIfNeeded: magnitude % 10) + 0x30
                magnitude /= 10
            } while magnitude > 0
            bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[index...]))
        }
    }
}

extension Double: RedisArgument {
    public func appendRedisBytes(to bytes: inout [UInt8]) { bytes.append(contentsOf: String(self).utf8) }
}

extension Array: RedisArgument where Element == UInt8 {
    public func appendRedisBytes(to bytes: inout [UInt8]) { bytes.append(contentsOf: self) }
}

extension ArraySlice: RedisArgument where Element == UInt8 {
    public func appendRedisBytes(to bytes: inout [UInt8]) { bytes.append(contentsOf: self) }
}

/// Arguments laid end to end in one buffer: a command of thousands of arguments is two
/// arrays, not one per argument, and hiredis reads them in place.
public struct RedisArguments: Sendable, Equatable {
    public private(set) var bytes: [UInt8] = []
    /// Where each argument ends in `bytes`.
    public private(set) var ends: [Int] = []

    public init() {}

    public init(_ arguments: [any RedisArgument]) {
        ends.reserveCapacity(arguments.count)
        for argument in arguments { append(argument) }
    }

    public var count: Int { ends.count }

    public subscript(index: Int) -> ArraySlice<UInt8> {
        bytes[(index == 0 ? 0 : ends[index - 1])..<ends[index]]
    }

    public mutating func reserveCapacity(arguments: Int, bytes byteCount: Int) {
        ends.reserveCapacity(ends.count + arguments)
        bytes.reserveCapacity(bytes.count + byteCount)
    }

    public mutating func append(_ argument: some RedisArgument) {
        argument.appendRedisBytes(to: &bytes)
        ends.append(bytes.count)
    }

    /// One argument made of `prefix` and the decimal digits of `value` (`ka:user:{7:42}:` and
    /// 42 give `ka:user:{7:42}:42`), with no `String` in between.
    public mutating func append(prefix: [UInt8], _ value: Int64) {
        bytes.append(contentsOf: prefix)
        value.appendRedisBytes(to: &bytes)
        ends.append(bytes.count)
    }

    /// An integer, without the existential of `append(_: any RedisArgument)`.
    public mutating func append(_ value: Int64) {
        value.appendRedisBytes(to: &bytes)
        ends.append(bytes.count)
    }

    public mutating func append(_ value: Int) { append(Int64(value)) }

    public mutating func append(contentsOf other: RedisArguments) {
        let shift = bytes.count
        bytes.append(contentsOf: other.bytes)
        ends.append(contentsOf: other.ends.lazy.map { $0 + shift })
    }
}

/// One command: its name and arguments, already encoded.
public struct RedisCommand: Sendable, Equatable {
    /// The name first, then the arguments.
    public var arguments: RedisArguments

    public init(_ name: String, _ arguments: any RedisArgument...) {
        self.init(name, arguments: arguments)
    }

    public init(_ name: String, arguments: [any RedisArgument]) {
        var all = RedisArguments()
        all.append(name)
        for argument in arguments { all.append(argument) }
        self.arguments = all
    }

    public init(_ name: String, arguments: RedisArguments) {
        var all = RedisArguments()
        all.append(name)
        all.append(contentsOf: arguments)
        self.arguments = all
    }

    /// A command whose arguments, its name first, are encoded already.
    public init(arguments: RedisArguments) {
        self.arguments = arguments
    }

    public var name: String { arguments.count == 0 ? "" : String(decoding: arguments[0], as: UTF8.self) }
}

/// Many commands already in Redis's wire format (RESP), end to end in one buffer: a
/// transaction of a thousand SETs is one append to the connection's output, with no
/// per-command formatting or allocation. Add a command with `add(arguments:)` followed by
/// exactly that many `argument` calls, or with `add(_:)`.
public struct RedisCommands: Sendable, Equatable {
    public private(set) var resp: [UInt8] = []
    public private(set) var count = 0

    public init() {}

    public mutating func reserveCapacity(bytes: Int) { resp.reserveCapacity(resp.count + bytes) }

    /// Starts a command of `arguments` arguments, its name included.
    public mutating func add(arguments: Int) {
        resp.append(UInt8(ascii: "*"))
        Int64(arguments).appendRedisBytes(to: &resp)
        resp.append(13)
        resp.append(10)
        count += 1
    }

    public mutating func argument(_ bytes: ArraySlice<UInt8>) {
        bytes.withUnsafeBufferPointer { argument($0) }
    }

    public mutating func argument(_ bytes: [UInt8]) {
        bytes.withUnsafeBufferPointer { argument($0) }
    }

    public mutating func argument(_ text: StaticString) {
        text.withUTF8Buffer { argument($0) }
    }

    /// The one implementation (concrete, so callers in other modules get no generic path).
    public mutating func argument(_ bytes: UnsafeBufferPointer<UInt8>) {
        resp.append(UInt8(ascii: "$"))
        Int64(bytes.count).appendRedisBytes(to: &resp)
        resp.append(13)
        resp.append(10)
        resp.append(contentsOf: bytes)
        resp.append(13)
        resp.append(10)
    }

    public mutating func add(_ command: RedisCommand) {
        add(arguments: command.arguments.count)
        for index in 0..<command.arguments.count { argument(command.arguments[index]) }
    }
}
