import Kafka
import Postgres
import Redis

enum PrewarmVersion {
    static let current = "0.1.0"

    static var libraries: [(String, String)] {
        [
            ("librdkafka", KafkaVersion.librdkafka),
            ("hiredis", RedisVersion.hiredis),
            ("libpq", PostgresVersion.libpq),
        ]
    }
}
