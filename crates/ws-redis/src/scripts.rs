//! The Lua scripts that make each channel operation one atomic step in Redis.

/// Numbers, stores and publishes publications that queued up together, grouped by channel, each group in
/// order.
///
/// ARGV: 1 meta TTL in s, 2 the head of a one-publication envelope, 3 the head of a batch envelope, 4 the
/// number of groups; then for each group a fresh epoch (kept only when the channel has none), its history
/// size (0: no stream), its history TTL in ms (0: the meta TTL), its pub/sub channel and its number of
/// publications `n`, followed by `n` triples: event as JSON (`null` or a string), data, idempotency window in
/// ms (0: no key). KEYS: for each group its meta hash and history stream, then the idempotency key of each of
/// its publications (a dummy when it has none). Returns, for each group, its epoch then its offsets.
///
/// One call pays the script's fixed cost once for all the groups, and per channel one read of the position,
/// one write of the new offset, one TTL refresh, and one PUBLISH of one envelope that carries its
/// publications (consecutive offsets from `n`); per publication there is only its stream entry.
///
/// With a key, a repeat within the window publishes nothing and answers the first offset: the check, the
/// publish and the record are one step, so a publish whose reply was lost can be retried safely.
///
/// The epoch is created only when the meta hash is missing, so it changes exactly when the channel's
/// state was lost (expired, evicted, Redis restarted empty). Offset 1 means a fresh meta hash: whatever
/// stream is left belongs to the lost epoch and is deleted before the first entry of the new one. The entry
/// id is the offset, so a read by offset needs no index.
pub(crate) const PUBLISH: &str = r#"
local k, a = 1, 5
local out = {}
for g = 1, tonumber(ARGV[4]) do
  local meta, stream = KEYS[k], KEYS[k + 1]
  k = k + 2
  local size, ttl, chan, n = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), ARGV[a + 3], tonumber(ARGV[a + 4])
  local cur = redis.call('hmget', meta, 'e', 'o')
  local epoch = cur[1]
  if not epoch then
    epoch = ARGV[a]
    redis.call('hset', meta, 'e', epoch)
  end
  a = a + 5
  local start = tonumber(cur[2] or '0')
  local offset = start
  local parts = {}
  out[#out + 1] = epoch
  for i = 1, n do
    local ev, data, window, idem = ARGV[a], ARGV[a + 1], ARGV[a + 2], KEYS[k]
    a, k = a + 3, k + 1
    local first = false
    if window ~= '0' then
      first = redis.call('get', idem)
    end
    if first then
      out[#out + 1] = tonumber(first)
    else
      offset = offset + 1
      if size > 0 then
        if offset == 1 then
          redis.call('del', stream)
        end
        redis.call('xadd', stream, 'MAXLEN', size, offset, 'd', data, 'ev', ev)
      end
      parts[#parts + 1] = '{"ev":' .. ev .. ',"d":' .. data .. '}'
      if window ~= '0' then
        redis.call('set', idem, offset, 'PX', window)
      end
      out[#out + 1] = offset
    end
  end
  if #parts == 1 then
    redis.call('publish', chan, ARGV[2] .. ',"e":"' .. epoch .. '","n":' .. offset .. ',' .. string.sub(parts[1], 2))
  elseif #parts > 1 then
    redis.call('publish', chan, ARGV[3] .. ',"e":"' .. epoch .. '","n":' .. (start + 1) .. ',"ps":[' .. table.concat(parts, ',') .. ']}')
  end
  if offset > start then
    redis.call('hset', meta, 'o', offset)
    if size > 0 then
      if ttl > 0 then
        redis.call('pexpire', stream, ttl)
      else
        redis.call('expire', stream, ARGV[1])
      end
    end
  end
  redis.call('expire', meta, ARGV[1])
end
return out
"#;

/// Reads a channel's position and, with a limit, its newest entries after a position.
///
/// KEYS: meta hash, history stream. ARGV: 1 a fresh epoch, 2 meta TTL in s, 3 the epoch of `since` (empty:
/// none), 4 the offset of `since`, 5 limit (0: position only).
/// Returns `{epoch, offset, entries}`, entries newest first as XREVRANGE gives them.
pub(crate) const READ: &str = r#"
local epoch = redis.call('hget', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('hset', KEYS[1], 'e', epoch)
  redis.call('expire', KEYS[1], ARGV[2])
end
local top = tonumber(redis.call('hget', KEYS[1], 'o') or '0')
local limit = tonumber(ARGV[5])
local entries = {}
if limit > 0 then
  local after = 0
  if ARGV[3] == epoch then
    after = tonumber(ARGV[4])
  end
  entries = redis.call('xrevrange', KEYS[2], '+', '(' .. after, 'COUNT', limit)
end
return {epoch, top, entries}
"#;

/// Reads a channel's presence, first removing members whose lease ran out.
///
/// KEYS: presence hash (conn id to client JSON), expiry sorted set (conn id scored by expiry ms).
/// ARGV: 1 now in ms. Returns the client JSON values.
pub(crate) const PRESENCE: &str = r#"
local expired = redis.call('zrangebyscore', KEYS[2], '-inf', ARGV[1])
if #expired > 0 then
  redis.call('hdel', KEYS[1], unpack(expired))
  redis.call('zremrangebyscore', KEYS[2], '-inf', ARGV[1])
end
return redis.call('hvals', KEYS[1])
"#;
