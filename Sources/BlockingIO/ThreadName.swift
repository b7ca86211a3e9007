import CPrewarmSystem

/// Names the calling thread as the kernel sees it (`top -H`, `/proc/*/task/*/comm`), so an
/// operator can tell a Redis connection's thread from librdkafka's. Foundation's
/// `Thread.name` does not reach the kernel on Linux. Names are cut to 15 bytes.
public enum ThreadName {
    public static func set(_ name: String) {
        _ = prewarm_set_thread_name(name)
    }
}
