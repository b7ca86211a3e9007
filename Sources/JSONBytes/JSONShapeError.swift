/// Why bytes are not the JSON a decoder built on `JSONReader` expects: the first thing wrong
/// with them (not JSON, a field of the wrong kind, one missing or given twice), said so a
/// dead letter's reason can name it.
package struct JSONShapeError: Error, CustomStringConvertible {
    package let description: String

    package init(_ description: String) {
        self.description = description
    }
}
