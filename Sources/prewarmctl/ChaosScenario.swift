/// The Kafka a chaos run uses (`PREWARM_DEV_KAFKA`).
enum ChaosBroker: String, Sendable {
    case mock, noida
}

/// The fleet's work in a run, in order: each phase is one worker's.
enum ChaosPhase: String, Sendable, CaseIterable {
    /// entry-ingest: the store-entry events (and bad ones) into the log and the activity.
    case ingest
    /// store-scorer: the nightly run over the active users.
    case scoring
    /// ka-prewarmer: three key-account reservations pre-warmed.
    case ka
    /// push-producer: the day's pre-warm.
    case prewarm
    /// push-producer: an hour's push.
    case push
}

/// What a scenario does to the fleet, and when (`at`: the share of the phase's work done).
enum ChaosFault: Sendable {
    case none
    /// kill -9 of a random pod of the phase's worker, started again three seconds later.
    case kill(ChaosPhase, at: Double)
    /// SIGSTOP of the pod holding the phase's lease (the KA task's runner, the scoring run's
    /// winner) past its lease, then SIGCONT.
    case stopLeaseHolder(ChaosPhase)
    /// SIGTERM to every pod at once, all started again.
    case terminateAll(ChaosPhase, at: Double)
    /// Redis stopped and started empty (a failover without persistence).
    case restartRedis(ChaosPhase, at: Double)
    /// PostgreSQL stopped (a fast shutdown) and started again after a few seconds.
    case restartPostgres(ChaosPhase, at: Double)
    /// The mock's brokers down for a few seconds, then up.
    case brokersDown(ChaosPhase, at: Double)
    /// The mock answering produce, fetch and commit requests with errors for a while.
    case requestErrors(ChaosPhase, at: Double)
    /// The mock's brokers 300 ms slower for a while.
    case latency(ChaosPhase, at: Double)
    /// The independent broker stopped and started again, its data kept.
    case restartBroker(ChaosPhase, at: Double)
    /// The fleet on the local Redis Cluster: kill -9 of the primary of the phase's busiest
    /// slot (`{act}` in the ingest, `{prewarm:runs}` in the runs, a shop's first user in the
    /// KA pre-warm); its replica is promoted.
    case failover(ChaosPhase, at: Double)
    /// The fleet on the local Redis Cluster: a quarter of the slots (4096) moved from one
    /// primary to another (`redis-cli --cluster reshard`) while the phase works.
    case reshard(ChaosPhase, at: Double)
    /// A downstream service down for part of the phase (the A/B service in the pre-warm,
    /// the material service in the push).
    case downstreamDown(ChaosPhase, service: String, seconds: Int)
    /// After the run: every consumer group reset to earliest, the fleet restarted; nothing
    /// may change and nothing may be pushed again.
    case replay
    /// Bad input of every kind (`ExtremeInputs`' table) on every consumed topic.
    case badInput

    /// The phase the fault lands in, if it lands in one.
    var phase: ChaosPhase? {
        switch self {
        case .kill(let phase, _), .stopLeaseHolder(let phase), .terminateAll(let phase, _),
            .restartRedis(let phase, _), .restartPostgres(let phase, _), .brokersDown(let phase, _),
            .requestErrors(let phase, _), .latency(let phase, _), .restartBroker(let phase, _),
            .downstreamDown(let phase, _, _), .failover(let phase, _), .reshard(let phase, _):
            return phase
        case .none, .replay, .badInput: return nil
        }
    }

    /// The share of the phase's work done when it lands.
    var at: Double {
        switch self {
        case .kill(_, let at), .terminateAll(_, let at), .restartRedis(_, let at), .restartPostgres(_, let at),
            .brokersDown(_, let at), .requestErrors(_, let at), .latency(_, let at), .restartBroker(_, let at),
            .failover(_, let at), .reshard(_, let at):
            return at
        case .stopLeaseHolder, .downstreamDown: return 0.3
        case .none, .replay, .badInput: return 0
        }
    }

    /// A pod is killed or stopped past its session: a batch in hand may be worked twice and
    /// a push produced but not marked may go out again with its id (counted, not failed).
    var crashes: Bool {
        switch self {
        case .kill, .stopLeaseHolder, .terminateAll: return true
        default: return false
        }
    }

    /// The fleet runs on the local Redis Cluster.
    var onCluster: Bool {
        switch self {
        case .failover, .reshard: return true
        default: return false
        }
    }

    /// Redis may lose writes it acknowledged (a failover: replication is asynchronous): a
    /// push claimed or marked sent in them may go out again with its id (counted, not failed).
    var losesRedisWrites: Bool {
        if case .failover = self { return true }
        return false
    }

    /// A bad message may be dead-lettered twice (counted, not failed): a pod killed between
    /// its letter and the letter's mark in Redis, or Redis restarted or failed over without
    /// the marks. Any other second letter, a replay's included, is a failure: a group letters
    /// a message once.
    var mayLetterTwice: Bool {
        if case .restartRedis = self { return true }
        return crashes || losesRedisWrites
    }
}

/// One named scenario: its fault and the brokers it runs on.
struct ChaosScenario: Sendable {
    let name: String
    let summary: String
    let fault: ChaosFault
    let brokers: [ChaosBroker]

    /// Why the broker does not run it.
    func unsupported(on broker: ChaosBroker) -> String {
        switch (broker, fault) {
        case (.noida, .kill), (.noida, .stopLeaseHolder):
            return "noida-db never evicts a consumer that died or stopped without leaving (its group stays stuck)"
        case (.noida, .brokersDown), (.noida, .requestErrors), (.noida, .latency):
            return "fault injection is the mock's API"
        case (.mock, .restartBroker):
            return "the mock keeps nothing across a restart (its brokers are taken down and up instead)"
        default:
            return "not for this broker"
        }
    }

    static let both: [ChaosBroker] = [.mock, .noida]

    static let all: [ChaosScenario] = {
        var scenarios = [
            ChaosScenario(
                name: "baseline", summary: "no fault: the invariants of a plain run", fault: .none, brokers: both)
        ]
        let workers: [(ChaosPhase, String)] = [
            (.ingest, "ingest"), (.scoring, "scorer"), (.ka, "ka"), (.prewarm, "prewarm"), (.push, "push"),
        ]
        for (phase, label) in workers {
            for percent in [20, 50, 80] {
                scenarios.append(
                    ChaosScenario(
                        name: "kill-\(label)-\(percent)",
                        summary:
                            "kill -9 of a random pod at \(percent) % of the \(phase.rawValue) phase, back 3 s later",
                        fault: .kill(phase, at: Double(percent) / 100), brokers: [.mock]))
            }
        }
        scenarios += [
            ChaosScenario(
                name: "stop-ka-runner", summary: "SIGSTOP of a KA task's runner past its lease, then SIGCONT",
                fault: .stopLeaseHolder(.ka), brokers: [.mock]),
            ChaosScenario(
                name: "stop-scorer-winner", summary: "SIGSTOP of the scoring run's winner past its lease, then SIGCONT",
                fault: .stopLeaseHolder(.scoring), brokers: [.mock]),
            ChaosScenario(
                name: "sigterm-all", summary: "SIGTERM of every pod at once mid-ingest, then all started again",
                fault: .terminateAll(.ingest, at: 0.5), brokers: both),
            ChaosScenario(
                name: "redis-restart", summary: "Redis restarted empty mid KA pre-warm (its verification re-warms)",
                fault: .restartRedis(.ka, at: 0.5), brokers: both),
            ChaosScenario(
                name: "postgres-restart", summary: "PostgreSQL restarted mid-ingest (pause and retry)",
                fault: .restartPostgres(.ingest, at: 0.5), brokers: both),
            ChaosScenario(
                name: "brokers-down", summary: "every broker down for 5 s mid-ingest, then up",
                fault: .brokersDown(.ingest, at: 0.4), brokers: [.mock]),
            ChaosScenario(
                name: "request-errors", summary: "produce, fetch and commit answered with errors mid-push",
                fault: .requestErrors(.push, at: 0.3), brokers: [.mock]),
            ChaosScenario(
                name: "broker-latency", summary: "300 ms more per request mid scoring run",
                fault: .latency(.scoring, at: 0.3), brokers: [.mock]),
            ChaosScenario(
                name: "broker-restart", summary: "the broker stopped and started again (data kept) mid-ingest",
                fault: .restartBroker(.ingest, at: 0.4), brokers: [.noida]),
            ChaosScenario(
                name: "downstream-prewarm", summary: "the A/B service down for 4 s of the pre-warm",
                fault: .downstreamDown(.prewarm, service: "ab", seconds: 4), brokers: both),
            ChaosScenario(
                name: "downstream-push", summary: "the material service down for 4 s of the push",
                fault: .downstreamDown(.push, service: "material", seconds: 4), brokers: both),
        ]
        // On a fresh local Redis Cluster: the primary of the phase's busiest slot killed (see
        // `Chaos.killPrimary`), or a quarter of the slots moved while the phase works.
        let failovers: [(ChaosPhase, String)] = [
            (.ingest, "the activity's slot"), (.scoring, "the runs' slot"), (.ka, "a shop's first user's slot"),
            (.push, "the runs' slot"),
        ]
        for (phase, slot) in failovers {
            scenarios.append(
                ChaosScenario(
                    name: "failover-\(phase.rawValue)",
                    summary: "Redis Cluster: the primary of \(slot) killed mid-\(phase.rawValue)",
                    fault: .failover(phase, at: 0.4), brokers: both))
        }
        for phase in [ChaosPhase.ka, .ingest] {
            scenarios.append(
                ChaosScenario(
                    name: "reshard-\(phase.rawValue)",
                    summary: "Redis Cluster: a quarter of the slots moved mid-\(phase.rawValue)",
                    fault: .reshard(phase, at: 0.2), brokers: both))
        }
        scenarios += [
            ChaosScenario(
                name: "replay", summary: "every group reset to earliest and the fleet restarted: nothing changes",
                fault: .replay, brokers: both),
            ChaosScenario(
                name: "bad-input", summary: "bad input of every kind on every consumed topic, among good traffic",
                fault: .badInput, brokers: both),
        ]
        return scenarios
    }()
}
