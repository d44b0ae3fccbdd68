"""Lua scripts of `RedisBroker`: each is one atomic step that would race as separate commands.

Session hash values are JSON (see keys.py), so the scripts compare states as JSON strings
after ``cjson.decode``.  Errors are returned as ``ROLLCAST_*`` error replies and mapped to
broker exceptions by the caller.  Every key a script touches is passed in KEYS.
"""

from __future__ import annotations

# Idle time given to handed-back jobs (ms): ~31 years, so they pass any min-idle filter;
# XCLAIM keeps "now - IDLE" positive as long as the server clock is past 2001.
HANDBACK_IDLE_MS = 10**12
# Min-idle a claimer asks for when taking handed-back jobs: only they are that idle, and the
# first claimer's XCLAIM resets the idle time, so a racing claimer gets nothing.
HANDBACK_MIN_IDLE_MS = 10**11

# KEYS: session hash, queue, queue seq, live set, jobs stream, key set (or hash if no key)
# ARGV: session id, quota (-1 = none), has key ("1"/"0"), field, json value, ...
CREATE_SESSION = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('ROLLCAST_EXISTS')
end
if ARGV[3] == '1' then
  local quota = tonumber(ARGV[2])
  if quota >= 0 and redis.call('SCARD', KEYS[6]) >= quota then
    return redis.error_reply('ROLLCAST_QUOTA')
  end
  redis.call('SADD', KEYS[6], ARGV[1])
end
local job = redis.call('XADD', KEYS[5], '*', 'session_id', ARGV[1])
redis.call('HSET', KEYS[1], 'job_id', cjson.encode(job), unpack(ARGV, 4))
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), ARGV[1])
return redis.call('ZRANK', KEYS[2], ARGV[1])
"""

# A job was delivered to a worker: dequeue the session and mark it, unless it has ended
# (then return nil and the caller retires the job).  Returns the previous state.
# KEYS: session hash, queue.  ARGV: session id, worker id (json)
START_JOB = """
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return false end
st = cjson.decode(st)
if st == 'ended' or st == 'failed' then return false end
redis.call('ZREM', KEYS[2], ARGV[1])
if st == 'queued' then
  redis.call('HSET', KEYS[1], 'state', cjson.encode('starting'))
end
redis.call('HSET', KEYS[1], 'worker_id', ARGV[2])
return st
"""

# KEYS: hash, queue, live set, jobs stream, key set (or hash), control, out, init, snapshot
# ARGV: session id, group, job id (or ''), ttl ms, has key, expect (json list or ''),
#       field, json value, ...
END_SESSION = """
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return redis.error_reply('ROLLCAST_NOSESSION') end
st = cjson.decode(st)
if st == 'ended' or st == 'failed' then return 0 end
if ARGV[6] ~= '' then
  local ok = false
  for _, s in ipairs(cjson.decode(ARGV[6])) do
    if s == st then ok = true end
  end
  if not ok then return 0 end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 7))
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
if ARGV[5] == '1' then redis.call('SREM', KEYS[5], ARGV[1]) end
if ARGV[3] ~= '' then
  redis.pcall('XACK', KEYS[4], ARGV[2], ARGV[3])
  redis.call('XDEL', KEYS[4], ARGV[3])
end
local ttl = tonumber(ARGV[4])
redis.call('PEXPIRE', KEYS[1], ttl)
for i = 6, #KEYS do redis.call('PEXPIRE', KEYS[i], ttl) end
return 1
"""

# A terminal state is final: a `state` field racing with end_session (e.g. pause vs DELETE)
# is dropped once the session has ended or failed; other fields are still written.
# KEYS: hash.  ARGV: field, json value, ...
UPDATE_SESSION = """
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('ROLLCAST_NOSESSION') end
local current = redis.call('HGET', KEYS[1], 'state')
local terminal = current == '"ended"' or current == '"failed"'
local pairs = {}
for i = 1, #ARGV, 2 do
  if not (terminal and ARGV[i] == 'state') then
    table.insert(pairs, ARGV[i])
    table.insert(pairs, ARGV[i + 1])
  end
end
if #pairs > 0 then redis.call('HSET', KEYS[1], unpack(pairs)) end
return 1
"""

# Append to a per-session stream; the stream inherits the session's TTL once it has one.
# KEYS: hash, stream.  ARGV: maxlen, field, value, ...
SESSION_XADD = """
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('ROLLCAST_NOSESSION') end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 2))
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return id
"""

# Store a per-session blob (init segment, snapshot) with the session's TTL if it has one.
# KEYS: hash, key.  ARGV: data
SESSION_SET = """
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('ROLLCAST_NOSESSION') end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ttl)
else
  redis.call('SET', KEYS[2], ARGV[1])
end
return 1
"""

# Operations on jobs that only their current owner may do.
# KEYS: jobs stream.  ARGV: group, worker id, op ('ack' | 'handback' | 'keepalive'),
#       handback consumer, handback idle ms, entry id, ...
# Returns, per entry id, 1 if done and 0 if the worker no longer owns it.
OWNED_JOBS = """
local out = {}
for i = 6, #ARGV do
  local id = ARGV[i]
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  if p[1] and p[1][2] == ARGV[2] then
    if ARGV[3] == 'ack' then
      redis.call('XACK', KEYS[1], ARGV[1], id)
      redis.call('XDEL', KEYS[1], id)
    elseif ARGV[3] == 'handback' then
      redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[4], 0, id, 'IDLE', ARGV[5], 'JUSTID')
    else
      redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id, 'JUSTID')
    end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
"""
