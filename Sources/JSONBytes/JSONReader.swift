/// JSON read and written byte by byte, for the hot paths that cannot afford Foundation's
/// generic coders (ingested events, job batches, downstream answers, push messages). The
/// reader reads strings with every escape (`\u` and surrogate pairs too), integers, and
/// skips any value its caller does not use; it answers nil for what is not JSON or not in
/// range (a number where an integer is wanted, a lone surrogate), so each shape is decoded
/// one way. The writer escapes as
/// `JSONEncoder` does (named escapes, `\u00XX` for other control characters, `/` as is).
package struct JSONReader {
    /// Valid while the reader is in use: it is made inside `read(_:_:)` (or over bytes the
    /// caller keeps alive) and never kept.
    package let bytes: UnsafeBufferPointer<UInt8>
    package var index = 0

    @inlinable
    package init(_ bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    /// `body` with a reader of `bytes`.
    @inlinable
    package static func read<T>(_ bytes: [UInt8], _ body: (inout JSONReader) -> T) -> T {
        bytes.withUnsafeBufferPointer { buffer in
            var reader = JSONReader(buffer)
            return body(&reader)
        }
    }

    /// True when only whitespace is left.
    @inlinable
    package var atEnd: Bool {
        mutating get {
            skipSpace()
            return index == bytes.count
        }
    }

    @inlinable
    package mutating func skipSpace() {
        while index < bytes.count,
            bytes[index] == 0x20 || bytes[index] == 0x0A || bytes[index] == 0x0D
                || bytes[index] == 0x09
        {
            index += 1
        }
    }

    @inlinable
    package mutating func peek() -> UInt8? {
        skipSpace()
        return index < bytes.count ? bytes[index] : nil
    }

    /// Takes `byte` (after whitespace) if it is next.
    @inlinable
    package mutating func take(_ byte: UInt8) -> Bool {
        guard peek() == byte else { return false }
        index += 1
        return true
    }

    @inlinable
    package mutating func literal(_ word: StaticString) -> Bool {
        let count = word.utf8CodeUnitCount
        guard index + count <= bytes.count else { return false }
        for offset in 0..<count where bytes[index + offset] != word.utf8Start[offset] { return false }
        index += count
        return true
    }

    /// An object, member by member: `member` gets each key's bytes (a string without escapes)
    /// and reads its value, answering false for anything outside the plain shape. True when
    /// the object ended and only whitespace follows it.
    @inlinable
    package mutating func object(_ member: (inout JSONReader, _ key: Range<Int>) -> Bool) -> Bool {
        guard take(UInt8(ascii: "{")) else { return false }
        if !take(UInt8(ascii: "}")) {
            repeat {
                guard let key = stringRange(), take(UInt8(ascii: ":")), member(&self, key) else { return false }
            } while take(UInt8(ascii: ","))
            guard take(UInt8(ascii: "}")) else { return false }
        }
        return atEnd
    }

    /// Whether the bytes at `range` are `word`.
    @inlinable
    package func matches(_ range: Range<Int>, _ word: StaticString) -> Bool {
        guard range.count == word.utf8CodeUnitCount else { return false }
        for offset in 0..<range.count where bytes[range.lowerBound + offset] != word.utf8Start[offset] { return false }
        return true
    }

    /// The bytes at `range` as text, or nil if they are not UTF-8.
    @inlinable
    package func text(_ range: Range<Int>) -> String? {
        String(validating: bytes[range], as: UTF8.self)
    }

    /// Moves past the bytes of a string that need no reading: up to its closing quote, an
    /// escape or a control character.
    @inlinable
    mutating func skipPlain() {
        while index < bytes.count, bytes[index] != UInt8(ascii: "\""), bytes[index] != UInt8(ascii: "\\"),
            bytes[index] >= 0x20
        {
            index += 1
        }
    }

    /// Where the bytes of a string without escapes or control characters are (read in
    /// place); nil for any other string.
    @inlinable
    package mutating func stringRange() -> Range<Int>? {
        guard take(UInt8(ascii: "\"")) else { return nil }
        let start = index
        skipPlain()
        guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { return nil }
        index += 1
        return start..<index - 1
    }

    /// A string, its escapes read (`\u` with surrogate pairs too). nil for a bad escape, a
    /// lone surrogate, a control character, invalid UTF-8 or a missing end.
    @inlinable
    package mutating func string() -> String? {
        guard take(UInt8(ascii: "\"")) else { return nil }
        // The usual string has no escape: read in place, no copy of its bytes.
        let start = index
        skipPlain()
        if index < bytes.count, bytes[index] == UInt8(ascii: "\"") {
            index += 1
            return text(start..<index - 1)
        }
        var scalars = Array(bytes[start..<index])
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            switch byte {
            case UInt8(ascii: "\""): return String(validating: scalars, as: UTF8.self)
            case UInt8(ascii: "\\"):
                guard index < bytes.count else { return nil }
                let escape = bytes[index]
                index += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): scalars.append(escape)
                case UInt8(ascii: "n"): scalars.append(0x0A)
                case UInt8(ascii: "r"): scalars.append(0x0D)
                case UInt8(ascii: "t"): scalars.append(0x09)
                case UInt8(ascii: "b"): scalars.append(0x08)
                case UInt8(ascii: "f"): scalars.append(0x0C)
                case UInt8(ascii: "u"):
                    guard let scalar = unicodeEscape() else { return nil }
                    scalars += Array(String(Character(scalar)).utf8)
                default: return nil
                }
            case 0..<0x20: return nil
            default: scalars.append(byte)
            }
        }
        return nil
    }

    /// The scalar of a `\u` escape whose `\u` was read: four hex digits, and for a high
    /// surrogate the `\uXXXX` of its low one.
    @inlinable
    mutating func unicodeEscape() -> Unicode.Scalar? {
        guard let unit = hex4() else { return nil }
        if (0xD800..<0xDC00).contains(unit) {
            guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u")
            else { return nil }
            index += 2
            guard let low = hex4(), (0xDC00..<0xE000).contains(low) else { return nil }
            return Unicode.Scalar(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))
        }
        return Unicode.Scalar(unit)  // nil for a lone low surrogate
    }

    @inlinable
    mutating func hex4() -> UInt32? {
        guard index + 4 <= bytes.count else { return nil }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt32
            switch byte {
            case 48...57: digit = UInt32(byte - 48)
            case 65...70: digit = UInt32(byte - 55)
            case 97...102: digit = UInt32(byte - 87)
            default: return nil
            }
            value = value << 4 | digit
            index += 1
        }
        return value
    }

    /// An integer without fraction or exponent, in range.
    @inlinable
    package mutating func integer() -> Int64? {
        skipSpace()
        let negative = index < bytes.count && bytes[index] == UInt8(ascii: "-")
        if negative { index += 1 }
        let start = index
        var value: Int64 = 0
        while index < bytes.count, bytes[index] >= 48, bytes[index] <= 57 {
            let (times, overflow) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times.addingReportingOverflow(Int64(bytes[index] - 48))
            guard !overflow, !overflow2 else { return nil }
            value = sum
            index += 1
        }
        let digits = index - start
        guard digits > 0, digits == 1 || bytes[start] != 48 else { return nil }  // no leading zero
        if index < bytes.count,
            bytes[index] == UInt8(ascii: ".") || bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E")
        {
            return nil
        }
        return negative ? -value : value
    }

    /// An array of integers.
    @inlinable
    package mutating func integers() -> [Int64]? {
        guard take(UInt8(ascii: "[")) else { return nil }
        var values: [Int64] = []
        if take(UInt8(ascii: "]")) { return values }
        repeat {
            guard let value = integer() else { return nil }
            values.append(value)
        } while take(UInt8(ascii: ","))
        return take(UInt8(ascii: "]")) ? values : nil
    }

    /// Any value, nested up to `depth` levels, whose content the caller does not use: a string
    /// (escapes checked), a number (fraction and exponent too), true, false, null, an array or
    /// an object.
    @inlinable
    package mutating func skipValue(depth: Int = 64) -> Bool {
        switch peek() {
        case UInt8(ascii: "\""): return string() != nil
        case UInt8(ascii: "{"):
            guard depth > 0 else { return false }
            index += 1
            if take(UInt8(ascii: "}")) { return true }
            repeat {
                guard string() != nil, take(UInt8(ascii: ":")), skipValue(depth: depth - 1) else { return false }
            } while take(UInt8(ascii: ","))
            return take(UInt8(ascii: "}"))
        case UInt8(ascii: "["):
            guard depth > 0 else { return false }
            index += 1
            if take(UInt8(ascii: "]")) { return true }
            repeat {
                guard skipValue(depth: depth - 1) else { return false }
            } while take(UInt8(ascii: ","))
            return take(UInt8(ascii: "]"))
        case UInt8(ascii: "t"): return literal("true")
        case UInt8(ascii: "f"): return literal("false")
        case UInt8(ascii: "n"): return literal("null")
        case nil: return false
        default: return number()
        }
    }

    /// A number as JSON writes one (sign, digits without a leading zero, fraction, exponent).
    @inlinable
    mutating func number() -> Bool {
        if index < bytes.count, bytes[index] == UInt8(ascii: "-") { index += 1 }
        func digits() -> Int {
            let start = index
            while index < bytes.count, bytes[index] >= 48, bytes[index] <= 57 { index += 1 }
            return index - start
        }
        let start = index
        let whole = digits()
        guard whole > 0, whole == 1 || bytes[start] != 48 else { return false }
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            guard digits() > 0 else { return false }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
                index += 1
            }
            guard digits() > 0 else { return false }
        }
        return true
    }
}
