// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "prewarm",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "prewarmctl", targets: ["prewarmctl"]),
        .executable(name: "entry-ingest", targets: ["entry-ingest"]),
        .executable(name: "store-scorer", targets: ["store-scorer"]),
        .executable(name: "recommend-api", targets: ["recommend-api"]),
        .executable(name: "ka-prewarmer", targets: ["ka-prewarmer"]),
        .executable(name: "push-producer", targets: ["push-producer"]),
        .library(name: "Kafka", targets: ["Kafka"]),
        .library(name: "Redis", targets: ["Redis"]),
        .library(name: "Postgres", targets: ["Postgres"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-configuration.git", from: "1.4.0", traits: []),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket.git", from: "2.8.1"),
    ],
    targets: [
        // C libraries, from Debian's -dev packages.
        .systemLibrary(
            name: "CRdKafka",
            pkgConfig: "rdkafka",
            providers: [.apt(["librdkafka-dev"]), .brew(["librdkafka"])]
        ),
        .systemLibrary(
            name: "CHiredis",
            pkgConfig: "hiredis",
            providers: [.apt(["libhiredis-dev"]), .brew(["hiredis"])]
        ),
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"]), .brew(["libpq"])]
        ),

        // Safe wrappers: own the C handles, their threads and their errors; no domain.
        .target(name: "CPrewarmSystem"),
        .target(name: "BlockingIO", dependencies: ["CPrewarmSystem"]),
        .target(
            name: "Kafka",
            dependencies: [
                "CRdKafka", "BlockingIO", .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "Redis",
            dependencies: [
                "CHiredis", "BlockingIO", .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .target(
            name: "Postgres",
            dependencies: [
                "CLibPQ", "BlockingIO", .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // librdkafka's mock cluster with a control port for fault injection.
        .target(name: "DevBroker", dependencies: ["Kafka"]),

        // Test and chaos fixtures the CLI, the tests and the benchmarks share (no product's).
        .target(name: "PrewarmFixtures", dependencies: ["Kafka"]),

        // The topic catalog and PREWARM_* configuration: light enough for the CLI and benchmarks.
        .target(
            name: "PrewarmConfiguration",
            dependencies: [
                "Kafka", "Redis", "Postgres", .product(name: "Logging", package: "swift-log"),
                .product(name: "Configuration", package: "swift-configuration"),
            ]
        ),

        // JSON read and written byte by byte for the hot paths (events, batches, downstream
        // answers, push messages): usable without the runtime (the simulator, tests).
        .target(name: "JSONBytes"),

        // Shared by every worker: consume loop, leases and flags, scheduler, admin HTTP, metrics.
        .target(
            name: "PrewarmRuntime",
            dependencies: [
                "BlockingIO", "Kafka", "Redis", "Postgres", "PrewarmConfiguration", "JSONBytes",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),

        // Products: one library each, holding its logic; executables only wire configuration.
        .target(
            name: "EntryIngest",
            dependencies: [
                "JSONBytes", "PrewarmRuntime", "PrewarmConfiguration", "Postgres", "Redis", "Kafka",
                .product(name: "Logging", package: "swift-log"), .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),

        .target(
            name: "StoreRecommendation",
            dependencies: [
                "EntryIngest", "PrewarmRuntime", "PrewarmConfiguration", "Postgres", "Redis", "JSONBytes",
                .product(name: "Logging", package: "swift-log"), .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
            ]),

        .target(
            name: "KAPrewarm",
            dependencies: [
                "PrewarmRuntime", "PrewarmConfiguration", "Postgres", "Redis", "Kafka",
                .product(name: "Logging", package: "swift-log"), .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),

        // The stand-in for push's downstream services (A/B, recommendation, material) over
        // real HTTP: a test and demo tool (prewarmctl simulate-downstream, tests, the bench).
        .target(
            name: "DownstreamSimulation",
            dependencies: [
                "JSONBytes",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
            ]),

        .target(
            name: "BookRecPush",
            dependencies: [
                "JSONBytes", "PrewarmRuntime", "PrewarmConfiguration", "Postgres", "Redis", "Kafka",
                .product(name: "Logging", package: "swift-log"), .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),

        // `prewarmctl console`: the fleet on one live page, and its actions.
        .target(
            name: "PrewarmConsole",
            dependencies: [
                "PrewarmRuntime", "PrewarmConfiguration", "Postgres", "Redis", "Kafka",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]),

        .executableTarget(name: "entry-ingest", dependencies: ["EntryIngest", "PrewarmRuntime"]),
        .executableTarget(name: "store-scorer", dependencies: ["StoreRecommendation", "PrewarmRuntime"]),
        .executableTarget(name: "recommend-api", dependencies: ["StoreRecommendation", "PrewarmRuntime"]),
        .executableTarget(name: "ka-prewarmer", dependencies: ["KAPrewarm", "PrewarmRuntime"]),
        .executableTarget(name: "push-producer", dependencies: ["BookRecPush", "PrewarmRuntime"]),
        .executableTarget(
            name: "prewarmctl",
            dependencies: [
                "Kafka", "Redis", "Postgres", "PrewarmConfiguration", "PrewarmRuntime", "DevBroker", "EntryIngest",
                "StoreRecommendation", "KAPrewarm", "BookRecPush", "PrewarmFixtures", "DownstreamSimulation",
                "PrewarmConsole", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "prewarm-bench",
            dependencies: [
                "Kafka", "Redis", "Postgres", "PrewarmConfiguration", "PrewarmRuntime", "EntryIngest",
                "StoreRecommendation", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // The benchmarks' open-loop HTTP load generator and delaying TCP proxy (C, epoll): it
        // shares the two cores with the server it measures, so it costs little per request.
        .executableTarget(name: "prewarm-load"),

        // Processes the tests start, stop (SIGSTOP) and kill: lease holders and workers.
        .executableTarget(
            name: "prewarm-testkit",
            dependencies: [
                "PrewarmConfiguration", "PrewarmRuntime", "Redis", "Kafka",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Tests/Testkit"
        ),
        .target(
            name: "TestSupport",
            dependencies: [
                "BlockingIO", "Kafka", "Redis", "Postgres", "DevBroker", "PrewarmRuntime", "DownstreamSimulation",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/TestSupport"),
        .testTarget(name: "DevBrokerTests", dependencies: ["DevBroker", "Kafka", "TestSupport"]),
        .testTarget(name: "BlockingIOTests", dependencies: ["BlockingIO"]),
        .testTarget(name: "JSONBytesTests", dependencies: ["JSONBytes"]),
        .testTarget(name: "KafkaTests", dependencies: ["Kafka", "TestSupport"]),
        .testTarget(
            name: "RedisTests",
            dependencies: ["Redis", "TestSupport", .product(name: "NIOPosix", package: "swift-nio")]),
        .testTarget(name: "PostgresTests", dependencies: ["Postgres", "TestSupport"]),
        .testTarget(name: "PrewarmConfigurationTests", dependencies: ["PrewarmConfiguration"]),
        .testTarget(
            name: "EntryIngestTests",
            dependencies: [
                "EntryIngest", "PrewarmRuntime", "PrewarmConfiguration", "TestSupport", "PrewarmFixtures", "Postgres",
                "Redis", "Kafka",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ]
        ),
        .testTarget(
            name: "StoreRecommendationTests",
            dependencies: [
                "StoreRecommendation", "EntryIngest", "PrewarmRuntime", "PrewarmConfiguration", "TestSupport",
                "PrewarmFixtures",
                "Postgres", "Redis", "Kafka", .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ]
        ),
        .testTarget(
            name: "KAPrewarmTests",
            dependencies: [
                "KAPrewarm", "PrewarmRuntime", "PrewarmConfiguration", "TestSupport", "PrewarmFixtures", "Postgres",
                "Redis", "Kafka",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "DownstreamSimulationTests",
            dependencies: ["DownstreamSimulation", "TestSupport"]),
        .testTarget(
            name: "BookRecPushTests",
            dependencies: [
                "BookRecPush", "DownstreamSimulation", "JSONBytes", "PrewarmRuntime", "PrewarmConfiguration",
                "TestSupport",
                "PrewarmFixtures", "Postgres",
                "Redis", "Kafka",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ]
        ),
        .testTarget(
            name: "PrewarmConsoleTests",
            dependencies: [
                "PrewarmConsole", "PrewarmRuntime", "PrewarmConfiguration", "TestSupport", "Postgres", "Redis", "Kafka",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ]
        ),
        .testTarget(
            name: "PrewarmRuntimeTests",
            dependencies: [
                "PrewarmConfiguration", "PrewarmRuntime", "TestSupport", "Postgres",
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOPosix", package: "swift-nio"), .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
