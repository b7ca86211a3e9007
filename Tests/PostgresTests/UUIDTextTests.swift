import Foundation
import Postgres
import Testing

@Suite("UUID text")
struct UUIDTextTests {
    @Test("lower-case text and parsing from bytes agree with Foundation, in either case")
    func agreesWithFoundation() {
        for _ in 0..<1000 {
            let uuid = UUID()
            #expect(uuid.lowercaseText == uuid.uuidString.lowercased())
            #expect(UUID(hexText: uuid.uuidString) == uuid)
            #expect(UUID(hexText: uuid.lowercaseText) == uuid)
        }
    }

    @Test("anything but 8-4-4-4-12 hex digits is refused")
    func refusals() {
        let good = "6f1c2a3e-0000-4000-8000-000000000001"
        #expect(UUID(hexText: good) != nil)
        for text in [
            "", "e-1", "6f1c2a3e-0000-4000-8000-00000000000g", "6f1c2a3e00000-4000-8000-000000000001",
            "6f1c2a3e-0000-4000-8000-0000000000011", "6f1c2a3e-0000-4000-8000-00000000001",
            "{6f1c2a3e-0000-4000-8000-000000000001}", "6f1c2a3e-0000-4000-8000-00000000000\u{e9}",
        ] {
            #expect(UUID(hexText: text) == nil, "\(text)")
        }
    }
}
