import Foundation
import Kafka
import Postgres

/// A one-dimensional `text[]` as PostgreSQL prints it (`{a,"b c",NULL}`); NULL reads as "".
enum PostgresTextArray {
    static func parse(_ text: String) -> [String] {
        var items: [String] = []
        var chars = Array(text.unicodeScalars)
        guard chars.first == "{", chars.last == "}" else { return [] }
        chars = Array(chars.dropFirst().dropLast())
        var index = 0
        while index < chars.count {
            var item = String.UnicodeScalarView()
            if chars[index] == "\"" {
                index += 1
                while index < chars.count, chars[index] != "\"" {
                    if chars[index] == "\\", index + 1 < chars.count { index += 1 }
                    item.append(chars[index])
                    index += 1
                }
                index += 1  // the closing quote
                items.append(String(item))
            } else {
                while index < chars.count, chars[index] != "," {
                    item.append(chars[index])
                    index += 1
                }
                let value = String(item)
                items.append(value == "NULL" ? "" : value)
            }
            if index < chars.count, chars[index] == "," { index += 1 }
        }
        return items
    }
}
