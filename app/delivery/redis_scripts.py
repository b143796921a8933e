"""Lua scripts of the Redis store: every change of a delivery's state is one atomic script.

Keys, all under one prefix ``P`` (a ``{hash tag}``, so a Redis Cluster keeps them in one slot):

- ``P d:<id>``       hash: the delivery (fields as in the SQLite table)
- ``P due:<dest>``   sorted set of pending ids, scored by when they are due
- ``P lease:<dest>`` sorted set of in-flight ids, scored by when their lease expires
- ``P age:<dest>``   sorted set of pending and in-flight ids, scored by creation (depth, oldest)
- ``P dead``         sorted set of dead letters, scored by when they died
- ``P done``         sorted set of delivered and dry-run ids, scored by when they finished
- ``P idem:<mapping>\\x1f<event_id>``  the first delivery id, expiring with the idempotency TTL
- ``P ev:<event_id>`` sorted set of the ids of an event's deliveries, scored by creation
- ``P at:<id>``      list of the delivery's attempts (JSON, ``AttemptRecord.to_dict``), oldest first
- ``P dests``        set of destinations seen; ``P schema`` the schema version
- ``P probe``        the time of the last readiness probe's write

Times are epoch seconds passed in by the caller. Floats are handed to Redis as strings.
Whatever deletes a delivery's hash deletes its ``at:`` list and its ``ev:`` entry (``FORGET``).
"""

from __future__ import annotations

# A Lua function the scripts that delete deliveries start with: removes the delivery's hash,
# its attempts and its entry in its event's index, given its id and event id (or false).
FORGET = """
local function forget(P, id, event_id)
  redis.call('DEL', P .. 'd:' .. id, P .. 'at:' .. id)
  if event_id then redis.call('ZREM', P .. 'ev:' .. event_id, id) end
end
"""

# ARGV: prefix, now, ttl_ms, max_pending, JSON list of
#   [id, mapping, destination, event_id|null, request_id|null, method, path, body, status]
# Returns {'ok', [status, id]...} or {'overloaded', active}.
ENQUEUE = """
local P, now, ttl, bound = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local items = cjson.decode(ARGV[5])
local results, seen, fresh = {}, {}, 0
for i, d in ipairs(items) do
  if d[4] ~= cjson.null then
    local key = P .. 'idem:' .. d[2] .. '\\31' .. d[4]
    local first = seen[key] or redis.call('GET', key)
    if first then results[i] = {'duplicate', first} else seen[key] = d[1] end
  end
  if not results[i] and d[9] == 'pending' then fresh = fresh + 1 end
end
if fresh > 0 then
  local active = 0
  for _, dest in ipairs(redis.call('SMEMBERS', P .. 'dests')) do
    active = active + redis.call('ZCARD', P .. 'age:' .. dest)
  end
  if active + fresh > bound then return {'overloaded', active} end
end
for i, d in ipairs(items) do
  if not results[i] then
    local id, dest, status = d[1], d[3], d[9]
    local key = P .. 'd:' .. id
    redis.call('HSET', key, 'mapping', d[2], 'destination', dest, 'method', d[6], 'path', d[7],
      'body', d[8], 'status', status, 'attempts', '0', 'created_at', now, 'updated_at', now)
    if d[4] ~= cjson.null then
      redis.call('HSET', key, 'event_id', d[4])
      redis.call('SET', P .. 'idem:' .. d[2] .. '\\31' .. d[4], id, 'PX', ttl)
      redis.call('ZADD', P .. 'ev:' .. d[4], now, id)
    end
    if d[5] ~= cjson.null then redis.call('HSET', key, 'request_id', d[5]) end
    if status == 'pending' then
      redis.call('HSET', key, 'due_at', now)
      redis.call('SADD', P .. 'dests', dest)
      redis.call('ZADD', P .. 'due:' .. dest, now, id)
      redis.call('ZADD', P .. 'age:' .. dest, now, id)
      results[i] = {'queued', id}
    else
      redis.call('ZADD', P .. 'done', now, id)
      results[i] = {'dry_run', id}
    end
  end
end
return {'ok', results}
"""

# ARGV: prefix, destination, now, limit, lease_until, lease_token
# Returns {id, {field, value, ...}} of each leased delivery, earliest due first (expired leases
# count as due at their expiry). The rows come with the lease: a second round trip to read them
# could fail (Redis going away) after this one took them, and they would wait out the lease.
LEASE = """
local P, dest, now, limit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local until_, token = ARGV[5], ARGV[6]
local due_key, lease_key = P .. 'due:' .. dest, P .. 'lease:' .. dest
local candidates = {}
for _, key in ipairs({due_key, lease_key}) do
  local found = redis.call('ZRANGEBYSCORE', key, '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
  for j = 1, #found, 2 do table.insert(candidates, {found[j], tonumber(found[j + 1])}) end
end
table.sort(candidates, function(a, b) return a[2] < b[2] end)
local leased = {}
for j = 1, math.min(limit, #candidates) do
  local id = candidates[j][1]
  redis.call('ZREM', due_key, id)
  redis.call('ZADD', lease_key, until_, id)
  local key = P .. 'd:' .. id
  redis.call('HSET', key, 'status', 'in_flight', 'lease_token', token, 'due_at', until_, 'updated_at', now)
  redis.call('HINCRBY', key, 'attempts', 1)
  table.insert(leased, {id, redis.call('HGETALL', key)})
end
return leased
"""

# ARGV: prefix, destination, lease_until, lease_token, now
# Gives back (due now, the attempt not counted) what a LEASE call with this token took, for a
# caller that never had its answer: the deliveries it took are the ones in its lease set scored
# by its lease expiry that still hold its token. Returns how many.
RELEASE_LEASE = """
local P, dest, until_, token, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local lease_key = P .. 'lease:' .. dest
local count = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', lease_key, until_, until_)) do
  local key = P .. 'd:' .. id
  local state = redis.call('HMGET', key, 'status', 'lease_token', 'attempts')
  if state[1] == 'in_flight' and state[2] == token then
    redis.call('ZREM', lease_key, id)
    redis.call('HDEL', key, 'lease_token')
    redis.call('HSET', key, 'status', 'pending', 'due_at', now, 'updated_at', now,
      'attempts', math.max(tonumber(state[3]) - 1, 0))
    redis.call('ZADD', P .. 'due:' .. dest, now, id)
    count = count + 1
  end
end
return count
"""

# ARGV: prefix, id, lease_token, outcome (delivered|pending|dead|release), now, due_at,
#       problem JSON or '', code or '', response JSON or '', attempt JSON or ''
# Returns 1 when the lease was still held (and then adds the attempt to the history), else 0.
FINISH = """
local P, id, token, outcome, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local key = P .. 'd:' .. id
local state = redis.call('HMGET', key, 'status', 'lease_token', 'destination', 'attempts')
if state[1] ~= 'in_flight' or state[2] ~= token then return 0 end
local dest = state[3]
if ARGV[10] ~= '' then redis.call('RPUSH', P .. 'at:' .. id, ARGV[10]) end
redis.call('ZREM', P .. 'lease:' .. dest, id)
redis.call('HDEL', key, 'lease_token')
redis.call('HSET', key, 'updated_at', now)
if ARGV[7] ~= '' then redis.call('HSET', key, 'last_problem', ARGV[7]) end
if ARGV[8] ~= '' then redis.call('HSET', key, 'last_code', ARGV[8]) end
if ARGV[9] ~= '' then redis.call('HSET', key, 'response', ARGV[9]) end
if outcome == 'pending' or outcome == 'release' then
  local due = ARGV[6]
  if outcome == 'release' then
    due = now
    redis.call('HSET', key, 'attempts', math.max(tonumber(state[4]) - 1, 0))
  end
  redis.call('HSET', key, 'status', 'pending', 'due_at', due)
  redis.call('ZADD', P .. 'due:' .. dest, due, id)
  return 1
end
redis.call('HSET', key, 'status', outcome)
redis.call('HDEL', key, 'due_at')
redis.call('ZREM', P .. 'age:' .. dest, id)
if outcome == 'dead' then
  redis.call('ZADD', P .. 'dead', now, id)
else
  redis.call('ZADD', P .. 'done', now, id)
end
return 1
"""

# ARGV: prefix, now, ids...  Dead letters back to pending, due now, attempts reset.
REPLAY = """
local P, now, count = ARGV[1], ARGV[2], 0
for j = 3, #ARGV do
  local id = ARGV[j]
  local key = P .. 'd:' .. id
  local state = redis.call('HMGET', key, 'status', 'destination', 'created_at')
  if state[1] == 'dead' then
    local dest = state[2]
    redis.call('ZREM', P .. 'dead', id)
    redis.call('HSET', key, 'status', 'pending', 'attempts', '0', 'due_at', now, 'updated_at', now)
    redis.call('HDEL', key, 'lease_token')
    redis.call('SADD', P .. 'dests', dest)
    redis.call('ZADD', P .. 'due:' .. dest, now, id)
    redis.call('ZADD', P .. 'age:' .. dest, state[3], id)
    count = count + 1
  end
end
return count
"""

# ARGV: prefix, ids...  Delete dead letters, and their idempotency keys while they point at them.
PURGE = (
    FORGET
    + """
local P, count = ARGV[1], 0
for j = 2, #ARGV do
  local id = ARGV[j]
  local key = P .. 'd:' .. id
  local state = redis.call('HMGET', key, 'status', 'mapping', 'event_id')
  if state[1] == 'dead' then
    if state[3] then
      local idem = P .. 'idem:' .. state[2] .. '\\31' .. state[3]
      if redis.call('GET', idem) == id then redis.call('DEL', idem) end
    end
    forget(P, id, state[3])
    redis.call('ZREM', P .. 'dead', id)
    count = count + 1
  end
end
return count
"""
)

# ARGV: prefix, before, batch.  Drop finished deliveries that finished before a time.
CLEANUP = (
    FORGET
    + """
local P = ARGV[1]
local ids = redis.call('ZRANGEBYSCORE', P .. 'done', '-inf', '(' .. ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  forget(P, id, redis.call('HGET', P .. 'd:' .. id, 'event_id'))
  redis.call('ZREM', P .. 'done', id)
end
return #ids
"""
)

# ARGV: prefix, ids...  Delete deliveries in any state (an erasure: the caller found that their
# bodies hold a person's identifier), with every index entry and their idempotency keys while
# they point at them. Returns {deliveries that were not dead, dead letters, keys deleted}.
ERASE = (
    FORGET
    + """
local P, erased, dead, keys = ARGV[1], 0, 0, 0
for j = 2, #ARGV do
  local id = ARGV[j]
  local state = redis.call('HMGET', P .. 'd:' .. id, 'status', 'destination', 'mapping', 'event_id')
  if state[1] then
    local dest = state[2]
    if state[1] == 'dead' then
      dead = dead + 1
      redis.call('ZREM', P .. 'dead', id)
    else
      erased = erased + 1
      redis.call('ZREM', P .. 'due:' .. dest, id)
      redis.call('ZREM', P .. 'lease:' .. dest, id)
      redis.call('ZREM', P .. 'age:' .. dest, id)
      redis.call('ZREM', P .. 'done', id)
    end
    if state[4] then
      local idem = P .. 'idem:' .. state[3] .. '\\31' .. state[4]
      if redis.call('GET', idem) == id then
        redis.call('DEL', idem)
        keys = keys + 1
      end
    end
    forget(P, id, state[4])
  end
end
return {erased, dead, keys}
"""
)
