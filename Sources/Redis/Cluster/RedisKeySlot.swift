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

extension RedisKeySlot {
    /// Positions grouped by slot: each slot's positions in order, the slots in the order each
    /// first appears (`slots[i]` is the slot of the i-th key).
    static func groups(_ slots: some Sequence<Int>) -> [(slot: Int, positions: [Int])] {
        var groups: [(slot: Int, positions: [Int])] = []
        var groupOfSlot: [Int: Int] = [:]
        for (position, slot) in slots.enumerated() {
            if let group = groupOfSlot[slot] {
                groups[group].positions.append(position)
            } else {
                groupOfSlot[slot] = groups.count
                groups.append((slot, [position]))
            }
        }
        return groups
    }

    /// The one hash tag, `{…}`, this client gives `slot`: a key of a slot rather than of a
    /// family (`tagged(_:besides:)`), e.g. the copy of a fence that guards every key of its
    /// slot, whichever keys a script takes.
    public static func tag(forSlot slot: Int) -> String { "{" + tags[slot] + "}" }

    /// `name` followed by a tag that puts it in `key`'s slot: `key`'s own tag when it has
    /// one, else `key` itself as the tag (it hashes whole, so the tag hashes the same), so the
    /// result reads as its family: `STORE_OPEN_IDS{STORE_RECOMMEND_DEFAULT}`. A `name` that
    /// carries that tag already is returned as it is.
    public static func tagged(_ name: String, besides key: String) -> String {
        let target = ownTag(key) ?? key
        if ownTag(name) == target { return name }  // already tagged so
        if target != key || !key.utf8.contains(where: { $0 == UInt8(ascii: "{") || $0 == UInt8(ascii: "}") }) {
            return name + "{" + target + "}"
        }
        return name + tag(forSlot: of(key))
    }

    /// The tag of `key`, when it has one.
    private static func ownTag(_ key: String) -> String? {
        var key = key
        return key.withUTF8 { bytes in
            let hashed = hashed(bytes)
            return hashed.count == bytes.count ? nil : String(decoding: hashed, as: UTF8.self)
        }
    }

    /// For each slot, the first base-36 number (as text) that hashes to it: about 170,000
    /// CRC16s once per process.
    private static let tags: [String] = {
        var tags = [String](repeating: "", count: count)
        var missing = count
        var number = 0
        while missing > 0 {
            let text = String(number, radix: 36)
            let slot = Int(crc16(text.utf8) % UInt16(count))
            if tags[slot].isEmpty {
                tags[slot] = text
                missing -= 1
            }
            number += 1
        }
        return tags
    }()
}
