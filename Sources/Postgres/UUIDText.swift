import Foundation

extension UUID {
    /// A UUID from `8-4-4-4-12` hex digits in either case, read straight from UTF-8 bytes
    /// (`UUID(uuidString:)` needs a `String` and scans it with `sscanf`).
    public init?(hexUTF8 utf8: UnsafeBufferPointer<UInt8>) {
        guard utf8.count == 36, utf8[8] == 0x2D, utf8[13] == 0x2D, utf8[18] == 0x2D, utf8[23] == 0x2D else {
            return nil
        }
        var value: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var invalid: UInt8 = 0
        let table = UUIDHex.values
        withUnsafeMutableBytes(of: &value) { out in
            var index = 0
            for byte in 0..<16 {
                if index == 8 || index == 13 || index == 18 || index == 23 { index += 1 }
                let high = table[Int(utf8[index])]
                let low = table[Int(utf8[index + 1])]
                invalid |= high | low
                out[byte] = high << 4 | low & 0x0F
                index += 2
            }
        }
        guard invalid & 0x80 == 0 else { return nil }
        self.init(uuid: value)
    }

    /// A UUID from its text, `8-4-4-4-12` hex digits in either case.
    public init?(hexText text: String) {
        var text = text
        guard let uuid = text.withUTF8(UUID.init(hexUTF8:)) else { return nil }
        self = uuid
    }

    /// The text in lower case, as PostgreSQL prints a `uuid` (Foundation's `uuidString` is
    /// upper case).
    public var lowercaseText: String {
        String(unsafeUninitializedCapacity: 36) { buffer in
            var index = 0
            withUnsafeBytes(of: uuid) { bytes in
                for (position, byte) in bytes.enumerated() {
                    if position == 4 || position == 6 || position == 8 || position == 10 {
                        buffer[index] = 0x2D
                        index += 1
                    }
                    buffer[index] = UUIDHex.digits[Int(byte >> 4)]
                    buffer[index + 1] = UUIDHex.digits[Int(byte & 0x0F)]
                    index += 2
                }
            }
            return 36
        }
    }
}

private enum UUIDHex {
    /// Each byte's hex digit value, or 0x80 for a byte that is not a hex digit.
    static let values: [UInt8] = (0...255).map { byte in
        switch byte {
        case 0x30...0x39: UInt8(byte - 0x30)
        case 0x61...0x66: UInt8(byte - 0x61 + 10)
        case 0x41...0x46: UInt8(byte - 0x41 + 10)
        default: 0x80
        }
    }
    static let digits: [UInt8] = Array("0123456789abcdef".utf8)
}
