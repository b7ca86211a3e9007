import Redis

/// The Lua scripts behind job-run records: each step of a run is one atomic script, so pods
/// racing for a run, consumers recording batches and a winner finishing its fan-out never
/// see a half-written record.
enum JobRunScripts {
    /// Marks a run finished once its fan-out is done and every batch is recorded; the
    /// success flag (`:done`) only for a run without failed batches.
    private static let complete = """
        local function complete(progress, done, now, retention)
          local p = redis.call('HMGET', progress, 'state', 'batches_total', 'batches_done', 'batches_failed',
            'started_at')
          if p[1] ~= 'fanned-out' then return '' end
          if tonumber(p[3]) + tonumber(p[4]) < tonumber(p[2]) then return '' end
          local final = 'succeeded'
          if tonumber(p[4]) > 0 then final = 'failed' end
          redis.call('HSET', progress, 'state', final, 'finished_at', now,
            'duration_ms', tonumber(now) - tonumber(p[5]))
          if final == 'succeeded' then redis.call('SET', done, now, 'PX', retention) end
          return final
        end
        """

    /// KEYS: lease, progress, done, index, active. ARGV: token, lease ms, now ms, force, owner,
    /// retention ms, index member, deadline ms or '', job, period, skip, due ms.
    /// Returns {outcome, detail}: start (the attempt), resume (the previous owner), held
    /// (the state), exists (the state), skipped.
    static let claim = RedisScript(
        name: "job-run-claim",
        source: """
            if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
              return {'held', redis.call('HGET', KEYS[2], 'state') or ''}
            end
            local state = redis.call('HGET', KEYS[2], 'state')
            if state and ARGV[4] ~= '1' then
              if state == 'running' then
                local previous = redis.call('HGET', KEYS[2], 'owner') or ''
                redis.call('HSET', KEYS[2], 'owner', ARGV[5])
                redis.call('HINCRBY', KEYS[2], 'takeovers', 1)
                redis.call('SADD', KEYS[5], ARGV[7])
                return {'resume', previous}
              end
              redis.call('DEL', KEYS[1])
              return {'exists', state}
            end
            local now = tonumber(ARGV[3])
            redis.call('ZADD', KEYS[4], now, ARGV[7])
            redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - tonumber(ARGV[6]))
            if ARGV[11] == '1' then
              redis.call('DEL', KEYS[1])
              redis.call('HSET', KEYS[2], 'job', ARGV[9], 'period', ARGV[10], 'attempt', 0, 'state', 'skipped',
                'started_at', now, 'finished_at', now, 'due_at', ARGV[12])
              redis.call('PEXPIRE', KEYS[2], ARGV[6])
              return {'skipped', ''}
            end
            local attempt = tonumber(redis.call('HGET', KEYS[2], 'attempt') or '0') + 1
            redis.call('DEL', KEYS[2], KEYS[3])
            redis.call('HSET', KEYS[2], 'job', ARGV[9], 'period', ARGV[10], 'attempt', attempt, 'state', 'running',
              'owner', ARGV[5], 'forced', ARGV[4], 'started_at', now, 'cursor', '', 'batches_produced', 0,
              'items_produced', 0, 'batches_done', 0, 'batches_failed', 0, 'items_done', 0, 'items_failed', 0,
              'takeovers', 0, 'due_at', ARGV[12])
            if ARGV[8] ~= '' then redis.call('HSET', KEYS[2], 'deadline_at', ARGV[8]) end
            redis.call('PEXPIRE', KEYS[2], ARGV[6])
            redis.call('SADD', KEYS[5], ARGV[7])
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
    /// Returns {'lost'} or {'fanned-out', final state or ''}.
    static let finishFanOut = RedisScript(
        name: "job-run-finish-fan-out",
        source: complete + """

            if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {'lost', ''} end
            redis.call('HSET', KEYS[2], 'state', 'fanned-out', 'batches_total', ARGV[4], 'items_total', ARGV[5],
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
        source: """
            if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
            local started = tonumber(redis.call('HGET', KEYS[2], 'started_at') or ARGV[2])
            redis.call('HSET', KEYS[2], 'state', ARGV[4], 'finished_at', ARGV[2],
              'duration_ms', tonumber(ARGV[2]) - started)
            if ARGV[5] ~= '' then redis.call('HSET', KEYS[2], 'error', ARGV[5]) end
            if ARGV[4] == 'succeeded' then redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[3]) end
            redis.call('DEL', KEYS[1])
            redis.call('SREM', KEYS[4], ARGV[6])
            return 1
            """)

    /// A consumer worked a batch. KEYS: progress, batches, done. ARGV: attempt, batch index,
    /// items done, items failed, failed (1/0), now ms, retention ms.
    /// Returns {'stale'}, {'duplicate'} or {'recorded', final state or ''}.
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
}
