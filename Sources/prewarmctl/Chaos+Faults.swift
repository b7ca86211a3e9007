import BlockingIO
import BookRecPush
import DevBroker
import EntryIngest
import Foundation
import KAPrewarm
import Kafka
import Logging
import Postgres
import PrewarmConfiguration
import PrewarmFixtures
import PrewarmRuntime
import Redis

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// A run's phases and the scenario's fault landed in them: kills, stops, restarts, broker faults, the pods found by role and lease.
extension Chaos {
    /// Waits for a phase to be done, landing the scenario's fault when the phase's progress
    /// reaches its share, and carrying out what the fault left for later (a pod to restart).
    func phase(
        _ phase: ChaosPhase, progress: @escaping () async throws -> Double, done: @escaping () async throws -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + .seconds(300)
        while true {
            try await runDue()
            if !applied, scenario.fault.phase == phase {
                let share = (try? await progress()) ?? 0
                if share >= scenario.fault.at {
                    applied = true
                    try await land(scenario.fault, progress: share)
                }
            }
            if later.isEmpty, (try? await done()) == true {
                if scenario.fault.phase == phase, !applied {
                    applied = true
                    faults.append(
                        "the \(phase.rawValue) phase ended before the fault's \(Int(scenario.fault.at * 100)) %")
                }
                return
            }
            guard ContinuousClock.now < deadline else {
                throw ChaosFailure("the \(phase.rawValue) phase did not end in 300 s")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    func runDue() async throws {
        while let index = later.firstIndex(where: { $0.at <= .now }) {
            let due = later.remove(at: index)
            try await due.action()
        }
    }

    func after(_ delay: Duration, _ what: String, _ action: @escaping () async throws -> Void) {
        later.append((.now + delay, what, action))
    }

    /// The fault, now; what undoes it is left for later.
    func land(_ fault: ChaosFault, progress: Double) async throws {
        let at = "at \(Int(progress * 100)) %"
        switch fault {
        case .none, .replay, .badInput:
            return
        case .kill(let phase, _):
            let pod = try pod(of: Self.worker(of: phase))
            await fleet.kill(pod)
            faults.append("kill -9 \(pod.name) \(at) of \(phase.rawValue)")
            after(.seconds(3), "restart \(pod.name)") { try await self.fleet.restart(pod, waitForReady: false) }
        case .stopLeaseHolder(let phase):
            let pod = try await leaseHolder(of: phase)
            pod.process.signal(SIGSTOP)
            faults.append("SIGSTOP \(pod.name) \(at) of \(phase.rawValue), SIGCONT 7 s later")
            after(.seconds(7), "SIGCONT \(pod.name)") { pod.process.signal(SIGCONT) }
        case .terminateAll(let phase, _):
            await fleet.terminateAll()
            faults.append("SIGTERM every pod \(at) of \(phase.rawValue)")
            for pod in fleet.pods { try await fleet.restart(pod, waitForReady: false) }
        case .restartRedis(let phase, _):
            try await service("stop", "redis")
            try await service("start", "redis")
            try await cache.send("SELECT", Self.redisDatabase)
            faults.append("Redis restarted empty \(at) of \(phase.rawValue)")
        case .failover(let phase, _):
            let victim = try await killPrimary(of: phase)
            faults.append("kill -9 of the Redis primary \(victim) \(at) of \(phase.rawValue)")
        case .reshard(let phase, _):
            let moved = try await reshard()
            faults.append("\(moved) \(at) of \(phase.rawValue)")
        case .restartPostgres(let phase, _):
            try await service("stop", "postgres")
            faults.append("PostgreSQL stopped \(at) of \(phase.rawValue), started 3 s later")
            after(.seconds(3), "start PostgreSQL") {
                try await self.service("start", "postgres")
                try await self.connectDatabase()
            }
        case .brokersDown(let phase, _):
            for broker in 1...3 { _ = try control("broker-down \(broker)") }
            faults.append("every broker down \(at) of \(phase.rawValue), up 5 s later")
            after(.seconds(5), "brokers up") { for broker in 1...3 { _ = try self.control("broker-up \(broker)") } }
        case .requestErrors(let phase, _):
            _ = try control("request-errors Produce 30 NOT_LEADER_FOR_PARTITION")
            _ = try control("request-errors Fetch 30 NOT_LEADER_FOR_PARTITION")
            _ = try control("request-errors OffsetCommit 10 COORDINATOR_NOT_AVAILABLE")
            faults.append("produce, fetch and commit errors \(at) of \(phase.rawValue)")
        case .latency(let phase, _):
            for broker in 1...3 { _ = try control("latency \(broker) 300") }
            faults.append("300 ms per request \(at) of \(phase.rawValue) for 5 s")
            after(.seconds(5), "latency off") { for broker in 1...3 { _ = try self.control("latency \(broker) 0") } }
        case .restartBroker(let phase, _):
            try await service("stop", "kafka")
            try await service("start", "kafka", extra: ["PREWARM_DEV_KAFKA_KEEP_DATA": "1"])
            faults.append("the broker restarted (data kept) \(at) of \(phase.rawValue)")
        case .downstreamDown(let phase, let service, let seconds):
            simulator.behaviour.down = [service]
            faults.append("\(service) down \(at) of \(phase.rawValue) for \(seconds) s")
            after(.seconds(seconds), "\(service) back") { self.simulator.behaviour.down = [] }
        }
    }

    /// Kills (SIGKILL) the cluster primary of the phase's busiest slot; its replica is
    /// promoted after the node time-out. Returns the node's port.
    func killPrimary(of phase: ChaosPhase) async throws -> Int {
        guard let cluster = (redis as? ChaosRedis)?.base as? RedisClusterClient else {
            throw ChaosFailure("not on a Redis Cluster")
        }
        let key: String
        switch phase {
        case .ingest: key = ActivityWriter.dayKey(ledger.day, prefix: "")
        case .ka: key = KACache(redis: cluster).userKey(shop: Self.shops[0].id, user: 1)
        default: key = JobRuns.indexKey
        }
        guard let victim = cluster.slotMap.primary(of: RedisKeySlot.of(key)) else {
            throw ChaosFailure("no primary for \(key)")
        }
        let pidFile = (base["PREWARM_DEV_RUN_DIR"] ?? ".run") + "/redis-cluster/\(victim.port)/redis.pid"
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
            let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines))
        else { throw ChaosFailure("no pid file for the Redis node on \(victim.port)") }
        Glibc.kill(pid, SIGKILL)
        return victim.port
    }

    /// Moves 4096 slots from the primary with the most to another, with `redis-cli --cluster
    /// reshard` (keys moved by MIGRATE while the fleet works). Says what moved.
    func reshard() async throws -> String {
        guard let cluster = (redis as? ChaosRedis)?.base as? RedisClusterClient else {
            throw ChaosFailure("not on a Redis Cluster")
        }
        let primaries = cluster.slotMap.primaries
        guard primaries.count >= 2 else { throw ChaosFailure("fewer than two primaries") }
        var ids: [RedisSlotMap.Node: String] = [:]
        for node in primaries {
            var configuration = cluster.configuration
            configuration.endpoint = .tcp(host: node.host, port: node.port)
            let connection = try await RedisConnection.connect(configuration)
            ids[node] = try await connection.send("CLUSTER", "MYID").string
            await connection.close()
        }
        let (from, to) = (primaries[0], primaries[1])
        guard let source = ids[from], let target = ids[to] else { throw ChaosFailure("no node ids") }
        var arguments = [
            "--cluster", "reshard", "\(from.host):\(from.port)", "--cluster-from", source, "--cluster-to", target,
            "--cluster-slots", "4096", "--cluster-yes", "--no-auth-warning",
        ]
        if let password = base["PREWARM_REDIS_PASSWORD"] { arguments += ["-a", password] }
        let child = try ChildProcess.spawn(
            "/usr/bin/redis-cli", arguments, environment: base, standardOutput: logs + "/reshard.log",
            standardError: logs + "/reshard.log")
        after(.milliseconds(100), "the resharding's end") {
            let status = try await child.wait(timeout: .seconds(240))
            guard status == 0 else { throw ChaosFailure("redis-cli --cluster reshard exited with \(status)") }
        }
        return "4096 slots moving from \(from.port) to \(to.port)"
    }

    func control(_ command: String) throws -> String {
        try DevBrokerControlClient(controlFile: base["PREWARM_DEV_BROKER_CONTROL_FILE"] ?? "").send(command)
    }

    static func worker(of phase: ChaosPhase) -> ChaosWorker {
        switch phase {
        case .ingest: return .entryIngest
        case .scoring: return .storeScorer
        case .ka: return .kaPrewarmer
        case .prewarm, .push: return .pushProducer
        }
    }

    /// A random running pod of the worker.
    func pod(of worker: ChaosWorker) throws -> ChaosPod {
        let running = fleet.pods(of: worker).filter(\.isRunning)
        guard !running.isEmpty else { throw ChaosFailure("no \(worker.rawValue) pod is running") }
        return running[Int(random.next() % UInt64(running.count))]
    }

    /// The pod holding the phase's lease: the KA task's runner, the scoring run's winner (or
    /// a random pod of the worker when nobody holds it now).
    func leaseHolder(of phase: ChaosPhase) async throws -> ChaosPod {
        var owner: String?
        switch phase {
        case .ka:
            owner = try await db.query(
                "SELECT owner FROM prewarm_tasks WHERE kind = 'ka-prewarm' AND state = 'running' LIMIT 1"
            ).first?[0].string
        default:
            let runs = JobRuns(
                redis: try cache, settings: JobRunSettings(), owner: "chaos", logger: logger, alerts: nil)
            owner = try await runs.progress(job: "store-score", period: String(ledger.day.prefix(8)))?.owner
        }
        let pid = owner.flatMap { $0.split(separator: ":").last.flatMap { Int32($0) } }
        if let holder = fleet.pods(of: Self.worker(of: phase)).first(where: { $0.process.pid == pid && $0.isRunning }) {
            return holder
        }
        return try pod(of: Self.worker(of: phase))
    }

    func adminPost(_ pod: ChaosPod, _ path: String) async throws -> (Int, String) {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(pod.port)\(path)")!)
        request.httpMethod = "POST"
        request.setValue("Bearer \(fleet.token)", forHTTPHeaderField: "Authorization")
        request.timeoutInterval = 30
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }

    func waitUntil(_ what: String, timeout: Duration, _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while try await !condition() {
            try await runDue()
            guard ContinuousClock.now < deadline else { throw ChaosFailure("\(what): not within \(timeout)") }
            try await Task.sleep(for: .milliseconds(200))
        }
    }
}
