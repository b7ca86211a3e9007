import BlockingIO
import Testing

@Suite("MallocArenas")
struct MallocArenasTests {
    @Test("the workers' arena cap yields to an operator's MALLOC_ARENA_MAX")
    func operatorWins() {
        #expect(!MallocArenas.limit(environment: ["MALLOC_ARENA_MAX": "8"]))
        #expect(MallocArenas.limit(environment: ["PATH": "/usr/bin"]))
    }
}
