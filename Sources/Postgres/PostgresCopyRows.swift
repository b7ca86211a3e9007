/// Rows encoded in COPY's text format, built up before `PostgresConnection.copy`.
public struct PostgresCopyRows: Sendable {
    public private(set) var bytes: [UInt8] = []
    public private(set) var count = 0

    public init(reservingBytes: Int = 0) {
        bytes.reserveCapacity(reservingBytes)
    }

    /// Appends one row; `nil` is SQL NULL.
    public mutating func append(_ fields: [(any PostgresEncodable)?]) {
        for (index, field) in fields.enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: "\t")) }
            guard let field else {
                bytes.append(0x5C)
                bytes.append(UInt8(ascii: "N"))
                continue
            }
            Self.escape(field.postgresText, into: &bytes)
        }
        bytes.append(UInt8(ascii: "\n"))
        count += 1
    }

    private static func escape(_ text: String, into bytes: inout [UInt8]) {
        var text = text
        // Native strings are contiguous UTF-8: a field with nothing to escape (nearly all)
        // is copied in one go.
        text.withUTF8 { utf8 in
            if !utf8.contains(where: { $0 == 0x5C || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }) {
                bytes.append(contentsOf: utf8)
                return
            }
            for byte in utf8 {
                switch byte {
                case 0x5C:
                    bytes.append(0x5C)
                    bytes.append(0x5C)
                case 0x09:
                    bytes.append(0x5C)
                    bytes.append(UInt8(ascii: "t"))
                case 0x0A:
                    bytes.append(0x5C)
                    bytes.append(UInt8(ascii: "n"))
                case 0x0D:
                    bytes.append(0x5C)
                    bytes.append(UInt8(ascii: "r"))
                default: bytes.append(byte)
                }
            }
        }
    }
}
