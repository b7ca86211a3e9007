import Foundation

/// A value sent as a query parameter or COPY field, in PostgreSQL's text format.
public protocol PostgresEncodable: Sendable {
    var postgresText: String { get }
}

extension String: PostgresEncodable {
    public var postgresText: String { self }
}

extension Int: PostgresEncodable {
    public var postgresText: String { String(self) }
}

extension Int64: PostgresEncodable {
    public var postgresText: String { String(self) }
}

extension Int32: PostgresEncodable {
    public var postgresText: String { String(self) }
}

extension Double: PostgresEncodable {
    public var postgresText: String { String(self) }
}

extension Bool: PostgresEncodable {
    public var postgresText: String { self ? "t" : "f" }
}

/// One row copied out of a result. Columns are read by position or by name.
public struct PostgresRow: Sendable {
    public let columns: [String]
    public let values: [String?]

    public subscript(index: Int) -> PostgresCell { PostgresCell(text: values[index]) }

    public subscript(name: String) -> PostgresCell {
        guard let index = columns.firstIndex(of: name) else { return PostgresCell(text: nil) }
        return PostgresCell(text: values[index])
    }
}

/// A column value in text format; `nil` is SQL NULL.
public struct PostgresCell: Sendable, Equatable {
    public let text: String?

    public var isNull: Bool { text == nil }
    public var string: String? { text }
    public var int: Int? { text.flatMap { Int($0) } }
    public var int64: Int64? { text.flatMap { Int64($0) } }
    public var double: Double? { text.flatMap { Double($0) } }
    public var bool: Bool? { text.map { $0 == "t" || $0 == "true" } }
}

/// What a statement returned: its rows (if any) and how many rows it affected.
public struct PostgresResult: Sendable {
    public let columns: [String]
    public let rows: [PostgresRow]
    /// From the command tag (`INSERT 0 5` -> 5); 0 for statements that report none.
    public let affectedRows: Int

    public var count: Int { rows.count }
    public var first: PostgresRow? { rows.first }
}

/// An array parameter (`= ANY($1::bigint[])`), in PostgreSQL's array literal form.
extension Array: PostgresEncodable where Element == Int64 {
    public var postgresText: String { "{" + map(String.init).joined(separator: ",") + "}" }
}

/// A text array parameter (`= ANY($1::text[])`): every element quoted, `"` and `\` escaped.
extension Array where Element == String {
    public var postgresArray: String {
        "{"
            + map {
                "\"" + $0.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
                    + "\""
            }
            .joined(separator: ",") + "}"
    }
}

extension Date: PostgresEncodable {
    /// RFC 3339 in UTC with microseconds, which `timestamptz` reads exactly.
    public var postgresText: String { RFC3339.format(self) }
}

/// Rows of integer columns, laid out row by row in one array (NULL reads as 0).
public struct PostgresIntegers: Sendable, Equatable {
    public let columns: Int
    public let values: [Int64]

    public var count: Int { columns == 0 ? 0 : values.count / columns }

    public subscript(row: Int, column: Int) -> Int64 { values[row * columns + column] }
}

/// Rows of text cells laid out row by row in one buffer (NULL and empty read alike).
public struct PostgresTexts: Sendable, Equatable {
    public let columns: Int
    public let bytes: [UInt8]
    /// Where each cell ends in `bytes`, row by row.
    public let ends: [Int]

    public var count: Int { columns == 0 ? 0 : ends.count / columns }

    public subscript(row: Int, column: Int) -> ArraySlice<UInt8> {
        let index = row * columns + column
        return bytes[(index == 0 ? 0 : ends[index - 1])..<ends[index]]
    }

    /// A cell read as a decimal integer (0 if it is not one).
    public func integer(row: Int, column: Int) -> Int64 {
        var value: Int64 = 0
        var negative = false
        for byte in self[row, column] {
            if byte == 0x2D {
                negative = true
            } else if byte >= 0x30 && byte <= 0x39 {
                value = value &* 10 &+ Int64(byte - 0x30)
            }
        }
        // Wrapping: Int64.min's digits wrap to Int64.min, which negates to itself.
        return negative ? 0 &- value : value
    }

    public func string(row: Int, column: Int) -> String { String(decoding: self[row, column], as: UTF8.self) }

    /// The rows in `range` as rows of their own (their bytes copied).
    public func rows(_ range: Range<Int>) -> PostgresTexts {
        guard columns > 0, !range.isEmpty else { return PostgresTexts(columns: columns, bytes: [], ends: []) }
        let first = range.lowerBound * columns
        let last = range.upperBound * columns - 1
        let start = first == 0 ? 0 : ends[first - 1]
        return PostgresTexts(
            columns: columns, bytes: Array(bytes[start..<ends[last]]), ends: ends[first...last].map { $0 - start })
    }
}
