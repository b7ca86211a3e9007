import Foundation
import PrewarmConfiguration
import Testing

@Suite("Configuration from the environment")
struct EnvironmentReaderTests {
    @Test("a bad value names its variable and what it accepts")
    func badValues() throws {
        let badPort = #expect(throws: ConfigurationError.self) {
            _ = try EnvironmentReader(["PREWARM_REDIS_PORT": "63a79"]).redis(clientName: "t")
        }
        #expect(badPort?.description.contains("PREWARM_REDIS_PORT") == true)
        #expect(badPort?.description.contains("1 to 65535") == true)

        let missing = #expect(throws: ConfigurationError.self) {
            _ = try EnvironmentReader([:]).postgres(applicationName: "t")
        }
        #expect(missing?.variable == "PREWARM_POSTGRES_URL")

        let bad = #expect(throws: ConfigurationError.self) {
            _ = try EnvironmentReader(["PREWARM_POSTGRES_URL": "host=db password=pw-123 bogus"]).postgres(
                applicationName: "t")
        }
        #expect(bad?.variable == "PREWARM_POSTGRES_URL")
        #expect(bad?.description.contains("pw-123") == false)

        let level = #expect(throws: ConfigurationError.self) {
            _ = try EnvironmentReader(["PREWARM_LOG_LEVEL": "loud"]).logLevel()
        }
        #expect(level?.description.contains("warning") == true)

        let zone = #expect(throws: ConfigurationError.self) {
            _ = try EnvironmentReader(["PREWARM_TIMEZONE": "Mars/Olympus"]).timeZone()
        }
        #expect(zone?.variable == "PREWARM_TIMEZONE")
        #expect(try EnvironmentReader([:]).timeZone().identifier == "Asia/Shanghai")

        let noKafka = #expect(throws: ConfigurationError.self) { _ = try EnvironmentReader([:]).kafka() }
        #expect(noKafka?.variable == "PREWARM_KAFKA_BOOTSTRAP_SERVERS")
    }

    @Test("good values are read, with the documented defaults for the rest")
    func goodValues() throws {
        let reader = EnvironmentReader([
            "PREWARM_REDIS_HOST": "cache", "PREWARM_REDIS_PASSWORD": "pw", "PREWARM_REDIS_DB": "2",
            "PREWARM_KAFKA_BOOTSTRAP_SERVERS": "k1:9092", "PREWARM_KAFKA_SECURITY_PROTOCOL": "SSL",
        ])
        let redis = try reader.redis(clientName: "entry-ingest")
        #expect(redis.endpoint == .tcp(host: "cache", port: 6379))
        #expect(redis.database == 2)
        #expect(!redis.description.contains("pw"))
        let kafka = try reader.kafka()
        #expect(kafka.bootstrapServers == "k1:9092")
        #expect(kafka.properties["security.protocol"] == "SSL")
    }
}
