import CPrewarmSystem

/// glibc's malloc gives a thread that meets contention an arena of its own (up to eight
/// per core), and memory freed into an arena stays with it. In a worker, librdkafka's
/// broker threads allocate the fetched messages and the poll thread frees them, so freed
/// fetch buffers piled up across arenas: entry-ingest's bench peaked at 159 to 220 MB
/// resident with glibc's default, 139 to 174 MB with two arenas at the same throughput
/// (one arena was slower: the threads then wait on its lock).
public enum MallocArenas {
    /// The workers' cap.
    public static let workerDefault = 2

    /// Caps the arenas at `count`, unless the operator set `MALLOC_ARENA_MAX` (glibc then
    /// applies theirs). Returns whether the cap was set here.
    @discardableResult
    public static func limit(to count: Int = workerDefault, environment: [String: String]) -> Bool {
        guard environment["MALLOC_ARENA_MAX"] == nil else { return false }
        return prewarm_set_malloc_arena_max(Int32(count)) == 1
    }
}
