import Foundation

/// Rows encoded in COPY's binary format, built up before `PostgresConnection.copy`.
///
/// The server reads binary fields without parsing text (no number, UUID or date parsing,
/// no escapes), which makes a large COPY cheaper for it than the text format. Each field's
/// encoding must match its column's type exactly: `Int64` for `bigint` (`Int32` for
/// `integer`, `Int16` for `smallint`), `Date` for
/// `timestamptz`, `UUID` for `uuid`, `String` for `text`. Start each row with
/// `startRow(fields:)` and append that many fields in column order; the server rejects a
/// row with the wrong count or a field of the wrong size.
public struct PostgresBinaryCopyRows: Sendable {
    public private(set) var bytes: [UInt8] = []
    public private(set) var count = 0

    /// `PGCOPY\n\377\r\n\0`, then no flags and no header extension.
    private static let header: [UInt8] =
        [0x50, 0x47, 0x43, 0x4F, 0x50, 0x59, 0x0A, 0xFF, 0x0D, 0x0A, 0x00] + [0, 0, 0, 0, 0, 0, 0, 0]
    /// The tuple count -1 that ends the data.
    static let trailer: [UInt8] = [0xFF, 0xFF]
    /// PostgreSQL counts timestamps from 2000-01-01 UTC, in microseconds.
    private static let postgresEpochMicroseconds: Int64 = 946_684_800_000_000

    public init(reservingBytes: Int = 0) {
        bytes.reserveCapacity(Self.header.count + reservingBytes)
        bytes.append(contentsOf: Self.header)
    }

    public mutating func startRow(fields: Int) {
        appendBigEndian(UInt16(fields))
        count += 1
    }

    /// A `bigint`.
    public mutating func append(_ value: Int64) {
        appendBigEndian(UInt32(8))
        appendBigEndian(UInt64(bitPattern: value))
    }

    /// An `integer`.
    public mutating func append(_ value: Int32) {
        appendBigEndian(UInt32(4))
        appendBigEndian(UInt32(bitPattern: value))
    }

    /// A `smallint`.
    public mutating func append(_ value: Int16) {
        appendBigEndian(UInt32(2))
        appendBigEndian(UInt16(bitPattern: value))
    }

    /// A `timestamptz`, to the microsecond (as `RFC3339.format` writes it).
    public mutating func append(_ date: Date) {
        append(RFC3339.microseconds(since1970: date) - Self.postgresEpochMicroseconds)
    }

    public mutating func append(_ text: String) {
        var text = text
        text.withUTF8 { utf8 in
            appendBigEndian(UInt32(utf8.count))
            bytes.append(contentsOf: utf8)
        }
    }

    public mutating func appendNull() {
        appendBigEndian(UInt32.max)  // length -1
    }

    /// A `uuid`.
    public mutating func append(_ uuid: UUID) {
        appendBigEndian(UInt32(16))
        withUnsafeBytes(of: uuid.uuid) { bytes.append(contentsOf: $0) }
    }

    /// A `uuid` from its text, `8-4-4-4-12` hex digits in either case.
    public mutating func append(uuid text: String) throws {
        guard let uuid = UUID(hexText: text) else {
            throw PostgresError(.invalidValue, operation: "COPY", message: "'\(text)' is not a UUID")
        }
        append(uuid)
    }

    private mutating func appendBigEndian<Value: FixedWidthInteger>(_ value: Value) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }
}
