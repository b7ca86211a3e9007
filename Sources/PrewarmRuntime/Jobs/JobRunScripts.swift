import Redis

/// The Lua scripts behind job-run records: each step of a run is one atomic script, so pods
/// racing for a run, consumers recording batches and a winner finishing its fan-out never
/// see a half-written record. The states they write are `JobRunState`'s, as the Lua
/// constants of `states` (`st_running`, `st_fanned_out`...); the words they answer are parsed
/// by `JobRunReply`.
enum JobRunScripts {
    /// `local st_running = 'running'`... for every `JobRunState`: the scripts spell no state.
    static let states = JobRunState.allCases.map { "local \($0.lua) = '\($0.rawValue)'" }.joined(separator: "\n") + "\n"

    /// The outcome of a run's counts (`JobRunState`): succeeded when nothing failed, failed
    /// when nothing was worked, partial between.
    private static let outcome =
        states + """
            local function outcome(batchesFailed, itemsDone, itemsFailed)
              if batchesFailed <= 0 and itemsFailed <= 0 then return st_succeeded end
              if itemsDone <= 0 then return st_failed end
              return st_partial
            end
            """

    /// Ends a fan-out run once its fan-out is done and every batch is recorded; the success
    /// flag (`:done`) only for a run that succeeded.
    private static let complete =
        outcome + """

            local function complete(progress, done, now, retention)
              local p = redis.call('HMGET', progress, 'state', 'batches_total', 'batches_done', 'batches_failed',
                'started_at', 'items_done', 'items_failed')
              if p[1] ~= st_fanned_out then return '' end
              if tonumber(p[3]) + tonumber(p[4]) < tonumber(p[2]) then return '' end
              local final = outcome(tonumber(p[4]), tonumber(p[6] or '0'), tonumber(p[7] or '0'))
              redis.call('HSET', progress, 'state', final, 'finished_at', now,
                'duration_ms', tonumber(now) - tonumber(p[5]))
              if final == st_succeeded then redis.call('SET', done, now, 'PX', retention) end
              return final
            end
            """

    /// Races for a run. KEYS: lease, progress, done, index, active. ARGV: `ClaimArguments`.
    /// Answers a `ClaimWord`: start (the attempt), resume (the previous owner), held (the
    /// state), exists (the state), skipped. A forced claim takes the lease even from a live
    /// holder: its next fenced write fails, and the new attempt's fences (`attempt` in the
    /// progress) stop the old attempt's batches.
    static let claim = RedisScript(
        name: "job-run-claim",
        source: states + ClaimArguments.lua + """
            if not redis.call('SET', KEYS[1], token, 'NX', 'PX', lease_ms) then
              if force ~= '1' then return {'held', redis.call('HGET', KEYS[2], 'state') or ''} end
              redis.call('SET', KEYS[1], token, 'PX', lease_ms)
            end
            local state = redis.call('HGET', KEYS[2], 'state')
            if state and force ~= '1' then
              if state == st_running then
                local previous = redis.call('HGET', KEYS[2], 'owner') or ''
                redis.call('HSET', KEYS[2], 'owner', owner)
                redis.call('HINCRBY', KEYS[2], 'takeovers', 1)
                redis.call('SADD', KEYS[5], member)
                return {'resume', previous}
              end
              redis.call('DEL', KEYS[1])
              return {'exists', state}
            end
            local now = tonumber(now_ms)
            redis.call('ZADD', KEYS[4], now, member)
            redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - tonumber(retention_ms))
            if skip == '1' then
              redis.call('DEL', KEYS[1])
              redis.call('HSET', KEYS[2], 'job', job, 'period', period, 'attempt', 0, 'state', st_skipped,
                'started_at', now, 'finished_at', now, 'due_at', due_ms)
              redis.call('PEXPIRE', KEYS[2], retention_ms)
              return {'skipped', ''}
            end
            local attempt = tonumber(redis.call('HGET', KEYS[2], 'attempt') or '0') + 1
            redis.call('DEL', KEYS[2], KEYS[3])
            redis.call('HSET', KEYS[2], 'job', job, 'period', period, 'attempt', attempt, 'state', st_running,
              'owner', owner, 'forced', force, 'started_at', now, 'cursor', '', 'batches_produced', 0,
              'items_produced', 0, 'batches_done', 0, 'batches_failed', 0, 'items_done', 0, 'items_failed', 0,
              'takeovers', 0, 'due_at', due_ms)
            if deadline_ms ~= '' then redis.call('HSET', KEYS[2], 'deadline_at', deadline_ms) end
            redis.call('PEXPIRE', KEYS[2], retention_ms)
            redis.call('SADD', KEYS[5], member)
            return {'start', tostring(attempt)}
            """)

    /// Fenced progress: writes the fields only while the lease is ours, and extends it.
    /// KEYS: lease, progress. ARGV: token, lease ms, then field, value pairs. Returns 1 or 0.
    static let record = RedisScript(
        name: "job-run-record",
        source: """
            if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
            redis.call('PEXPIRE', KEYS[1], ARGV[2])
            if #ARGV > 2 then redis.call('HSET', KEYS[2], unpack(ARGV, 3)) end
            return 1
            """)

    /// The fan-out is done: the run now waits for its batches (or completes at once).
    /// KEYS: lease, progress, done, active. ARGV: token, now ms, retention ms, batches, items,
    /// active member.
    /// Answers a `FinishFanOutWord`: {lost} or {fanned-out, final state or ''}.
    static let finishFanOut = RedisScript(
        name: "job-run-finish-fan-out",
        source: complete + """

            if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {'lost', ''} end
            redis.call('HSET', KEYS[2], 'state', st_fanned_out, 'batches_total', ARGV[4], 'items_total', ARGV[5],
              'fanout_finished_at', ARGV[2])
            redis.call('DEL', KEYS[1])
            redis.call('SREM', KEYS[4], ARGV[6])
            return {'fanned-out', complete(KEYS[2], KEYS[3], ARGV[2], ARGV[3])}
            """)

    /// A run that works in place (no batches) ends, or a fan-out fails.
    /// KEYS: lease, progress, done, active. ARGV: token, now ms, retention ms, state, error,
    /// active member.
    static let finish = RedisScript(
        name: "job-run-finish",
        source: states + """
            if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
            local started = tonumber(redis.call('HGET', KEYS[2], 'started_at') or ARGV[2])
            redis.call('HSET', KEYS[2], 'state', ARGV[4], 'finished_at', ARGV[2],
              'duration_ms', tonumber(ARGV[2]) - started)
            if ARGV[5] ~= '' then redis.call('HSET', KEYS[2], 'error', ARGV[5]) end
            if ARGV[4] == st_succeeded then redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[3]) end
            redis.call('DEL', KEYS[1])
            redis.call('SREM', KEYS[4], ARGV[6])
            return 1
            """)

    /// A consumer worked a batch. KEYS: progress, batches, done. ARGV: attempt, batch index,
    /// items done, items failed, failed (1/0), now ms, retention ms.
    /// Answers a `RecordBatchWord`: {stale}, {duplicate} or {recorded, final state or ''}.
    static let recordBatch = RedisScript(
        name: "job-run-record-batch",
        source: complete + """

            if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] then return {'stale', ''} end
            if redis.call('SADD', KEYS[2], ARGV[2]) == 0 then return {'duplicate', ''} end
            redis.call('PEXPIRE', KEYS[2], ARGV[7])
            if ARGV[5] == '1' then
              redis.call('HINCRBY', KEYS[1], 'batches_failed', 1)
            else
              redis.call('HINCRBY', KEYS[1], 'batches_done', 1)
            end
            redis.call('HINCRBY', KEYS[1], 'items_done', ARGV[3])
            redis.call('HINCRBY', KEYS[1], 'items_failed', ARGV[4])
            return {'recorded', complete(KEYS[1], KEYS[3], ARGV[6], ARGV[7])}
            """)

    /// A consumer is about to work a batch: checks it is of the run's current attempt (an
    /// older attempt's batch is stale: a forced re-run fenced it), not recorded yet, not
    /// worked by a live consumer now, and has not been started `max` times by consumers that
    /// never came back (their pods died in it: a batch that kills pods). Then takes the
    /// batch's lease and counts the start. KEYS: progress, batch lease, starts hash,
    /// recorded batches. ARGV: attempt, batch index, token, lease ms, max starts, retention ms.
    /// Answers a `BeginBatchWord`: {orphan}, {stale, current attempt}, {recorded},
    /// {busy, holder}, {crashed, starts} or {begin, starts before this one}.
    static let beginBatch = RedisScript(
        name: "job-run-begin-batch",
        source: """
            local attempt = redis.call('HGET', KEYS[1], 'attempt')
            if not attempt then return {'orphan', ''} end
            if attempt ~= ARGV[1] then return {'stale', attempt} end
            if redis.call('SISMEMBER', KEYS[4], ARGV[2]) == 1 then return {'recorded', ''} end
            local holder = redis.call('GET', KEYS[2])
            if holder and holder ~= ARGV[3] then return {'busy', holder} end
            local starts = tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '0')
            if starts >= tonumber(ARGV[5]) then return {'crashed', tostring(starts)} end
            redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
            redis.call('HINCRBY', KEYS[3], ARGV[2], 1)
            redis.call('PEXPIRE', KEYS[3], ARGV[6])
            return {'begin', tostring(starts)}
            """)

    /// The consumer that began a batch came back from it (done, failed, or giving it up at
    /// shutdown): its start no longer counts as one that never returned.
    /// KEYS: starts hash. ARGV: batch index.
    static let endBatch = RedisScript(
        name: "job-run-end-batch",
        source: """
            if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
            return 1
            """)

    /// The finish step ended: the run's outcome settled from its counts as the step left them
    /// (a hook that recovered failed items moved them to done), the step reported, and the
    /// duration taken to now. KEYS: progress, done. ARGV: attempt, now ms, retention ms.
    /// Returns the final state, or '' when the record is of another attempt (or gone).
    static let settle = RedisScript(
        name: "job-run-settle",
        source: outcome + """

            local p = redis.call('HMGET', KEYS[1], 'attempt', 'state', 'batches_failed', 'items_done', 'items_failed',
              'started_at', 'error')
            if p[1] ~= ARGV[1] then return '' end
            local final = p[2]
            if (final == st_succeeded or final == st_partial or final == st_failed) and (p[7] or '') == '' then
              final = outcome(tonumber(p[3] or '0'), tonumber(p[4] or '0'), tonumber(p[5] or '0'))
            end
            redis.call('HSET', KEYS[1], 'state', final, 'finish_reported', 1, 'settled_at', ARGV[2],
              'duration_ms', tonumber(ARGV[2]) - tonumber(p[6] or ARGV[2]))
            if final == st_succeeded then redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3]) end
            return final
            """)
}

extension JobRunState {
    /// The state's Lua constant in the scripts (`st_fanned_out`).
    var lua: String { "st_" + rawValue.replacingOccurrences(of: "-", with: "_") }
}

/// The claim script's arguments, named: the one place their order is fixed (`values` and
/// the script's `local` line are made from the same list).
struct ClaimArguments {
    var token: String
    var leaseMilliseconds: Int
    var now: Int64
    var force: Bool
    var owner: String
    var retentionMilliseconds: Int
    /// The run in the index and the active set: `job:period`.
    var member: String
    var deadline: Int64?
    var job: String
    var period: String
    var skip: Bool
    var due: Int64

    /// (Lua name, value) in ARGV order.
    private static let fields: [(name: String, value: @Sendable (ClaimArguments) -> any RedisArgument)] = [
        ("token", { $0.token }), ("lease_ms", { $0.leaseMilliseconds }), ("now_ms", { $0.now }),
        ("force", { $0.force ? "1" : "0" }), ("owner", { $0.owner }), ("retention_ms", { $0.retentionMilliseconds }),
        ("member", { $0.member }), ("deadline_ms", { $0.deadline.map(String.init) ?? "" }), ("job", { $0.job }),
        ("period", { $0.period }), ("skip", { $0.skip ? "1" : "0" }), ("due_ms", { $0.due }),
    ]

    var values: RedisArguments { RedisArguments(Self.fields.map { $0.value(self) }) }

    /// `local token, lease_ms, ... = ARGV[1], ARGV[2], ...`
    static let lua =
        "local " + fields.map(\.name).joined(separator: ", ") + " = "
        + fields.indices.map { "ARGV[\($0 + 1)]" }.joined(separator: ", ") + "\n"
}
