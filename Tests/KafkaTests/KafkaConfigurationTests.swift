import Kafka
import Testing

@Suite("librdkafka properties")
struct KafkaConfigurationTests {
    @Test("PREWARM_KAFKA_* variables become librdkafka properties")
    func propertiesFromEnvironment() {
        let properties = KafkaProperties.fromEnvironment([
            "PREWARM_KAFKA_SASL_MECHANISM": "PLAIN", "PREWARM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "PREWARM_KAFKA_SASL_PASSWORD": "pw", "PREWARM_REDIS_HOST": "r",
        ])
        #expect(
            properties.values == ["sasl.mechanism": "PLAIN", "security.protocol": "SASL_SSL", "sasl.password": "pw"])
        #expect(properties.redacted["sasl.password"] == "***")
    }
}
