package enum JSONWriter {
    /// `text` as a quoted JSON string, escaped as `JSONEncoder` escapes it. Runs of bytes
    /// that need no escape are copied whole from the string's contiguous UTF-8.
    package static func string(_ text: String, into out: inout [UInt8]) {
        var text = text
        text.withUTF8 { escaped($0, into: &out) }
    }

    package static func string(_ text: Substring, into out: inout [UInt8]) {
        var text = text
        text.withUTF8 { escaped($0, into: &out) }
    }

    /// `text` as a JSON string's content: escaped as `string(_:into:)` does, without quotes.
    package static func escaped(_ text: String) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count + 2)
        string(text, into: &out)
        return String(decoding: out.dropFirst().dropLast(), as: UTF8.self)
    }

    private static func escaped(_ bytes: UnsafeBufferPointer<UInt8>, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var start = 0
        for index in bytes.indices {
            let byte = bytes[index]
            guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<index]))
            start = index + 1
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), byte]
            case 0x0A: out += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
            case 0x0D: out += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
            case 0x09: out += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
            case 0x08: out += [UInt8(ascii: "\\"), UInt8(ascii: "b")]
            case 0x0C: out += [UInt8(ascii: "\\"), UInt8(ascii: "f")]
            default:
                let hex = Array("0123456789abcdef".utf8)
                out += Array(#"\u00"#.utf8) + [hex[Int(byte >> 4)], hex[Int(byte & 15)]]
            }
        }
        out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start...]))
        out.append(UInt8(ascii: "\""))
    }

    /// `value` in decimal.
    package static func integer(_ value: Int64, into out: inout [UInt8]) {
        if value < 0 { out.append(UInt8(ascii: "-")) }
        let first = out.count
        var magnitude = value.magnitude
        repeat {
            out.append(UInt8(48 + magnitude % 10))
            magnitude /= 10
        } while magnitude > 0
        out[first...].reverse()
    }
}
