import CoreMetrics
import Foundation
import Logging
import Postgres
import Redis
import Synchronization

extension JSONEncoder {
    /// Dates as RFC 3339 strings, keys sorted: the one encoder of admin answers and records.
    /// Sorted keys; times as a person reads them: RFC 3339 with `PREWARM_TIMEZONE`'s offset
    /// (`RFC3339.display`), which every RFC 3339 reader takes.
    public static var prewarm: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(RFC3339.display(date))
        }
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }
}

extension JSONDecoder {
    public static var prewarm: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }
}
