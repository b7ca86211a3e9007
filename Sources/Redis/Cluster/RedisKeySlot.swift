/// Redis Cluster's slot of a key: CRC16 (XMODEM, as Redis's own `crc16.c`) of the key, or of
/// its hash tag (the text between the first `{` and the next `}`, when not empty), mod 16384.
/// Keys with the same tag share a slot, so a script or transaction can take them together.
public enum RedisKeySlot {
    public static let count = 16_384

    public static func of(_ key: String) -> Int {
        var key = key
        return key.withUTF8 { of(bytes: $0) }
    }

    public static func of(bytes key: some Collection<UInt8>) -> Int {
        Int(crc16(hashed(key)) % UInt16(count))
    }

    /// The part of `key` that is hashed: its tag, or all of it.
    static func hashed<Bytes: Collection<UInt8>>(_ key: Bytes) -> Bytes.SubSequence {
        guard let open = key.firstIndex(of: UInt8(ascii: "{")) else { return key[...] }
        let afterOpen = key.index(after: open)
        guard let close = key[afterOpen...].firstIndex(of: UInt8(ascii: "}")), close != afterOpen else {
            return key[...]
        }
        return key[afterOpen..<close]
    }

    /// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, no reflection.
    static func crc16(_ bytes: some Sequence<UInt8>) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc = (crc << 8) ^ table[Int((crc >> 8) ^ UInt16(byte))]
        }
        return crc
    }

    private static let table: [UInt16] = (0..<256).map { index in
        var crc = UInt16(index) << 8
        for _ in 0..<8 {
            crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1
        }
        return crc
    }
}
