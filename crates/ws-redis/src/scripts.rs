//! The Lua scripts that make each channel operation one atomic step in Redis.

/// Numbers, stores and publishes the publications of one channel that queued up together, in order.
///
/// KEYS: 1 meta hash, 2 history stream, then `2 + i` the idempotency key of publication `i` (a dummy when it
/// has none). ARGV: 1 a fresh epoch (kept only when the channel has none), 2 history size (0: no stream),
/// 3 history TTL in ms (0: the meta TTL), 4 meta TTL in s, 5 pub/sub channel, 6 the head of a one-publication
/// envelope, 7 the head of a batch envelope; then for each publication `i` from 1, at `5 + 3i` its event as
/// JSON (`null` or a string), at `6 + 3i` its data, at `7 + 3i` its idempotency window in ms (0: no key).
/// Returns `{epoch, offset_1, ..., offset_n}`.
///
/// One call for several publications pays the fixed costs once: one read of the position, one write of the
/// new offset, one TTL refresh, and one PUBLISH of one envelope that carries them all (consecutive offsets
/// from `n`); per publication there is only its stream entry.
///
/// With a key, a repeat within the window publishes nothing and answers the first offset: the check, the
/// publish and the record are one step, so a publish whose reply was lost can be retried safely.
///
/// The epoch is created only when the meta hash is missing, so it changes exactly when the channel's
/// state was lost (expired, evicted, Redis restarted empty). Offset 1 means a fresh meta hash: whatever
/// stream is left belongs to the lost epoch and is deleted before the first entry of the new one. The entry
/// id is the offset, so a read by offset needs no index.
pub(crate) const PUBLISH: &str = r#"
local epoch = redis.call('hget', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('hset', KEYS[1], 'e', epoch)
end
local start = tonumber(redis.call('hget', KEYS[1], 'o') or '0')
local offset = start
local size = tonumber(ARGV[2])
local out = {epoch}
local parts = {}
for i = 1, (#ARGV - 7) / 3 do
  local ev, data, window = ARGV[5 + 3 * i], ARGV[6 + 3 * i], ARGV[7 + 3 * i]
  local first = false
  if window ~= '0' then
    first = redis.call('get', KEYS[2 + i])
  end
  if first then
    out[#out + 1] = tonumber(first)
  else
    offset = offset + 1
    if size > 0 then
      if offset == 1 then
        redis.call('del', KEYS[2])
      end
      redis.call('xadd', KEYS[2], 'MAXLEN', size, offset, 'd', data, 'ev', ev)
    end
    parts[#parts + 1] = '{"ev":' .. ev .. ',"d":' .. data .. '}'
    if window ~= '0' then
      redis.call('set', KEYS[2 + i], offset, 'PX', window)
    end
    out[#out + 1] = offset
  end
end
if #parts == 1 then
  redis.call('publish', ARGV[5], ARGV[6] .. ',"e":"' .. epoch .. '","n":' .. offset .. ',' .. string.sub(parts[1], 2))
elseif #parts > 1 then
  redis.call('publish', ARGV[5], ARGV[7] .. ',"e":"' .. epoch .. '","n":' .. (start + 1) .. ',"ps":[' .. table.concat(parts, ',') .. ']}')
end
if offset > start then
  redis.call('hset', KEYS[1], 'o', offset)
  if size > 0 then
    local ttl = tonumber(ARGV[3])
    if ttl > 0 then
      redis.call('pexpire', KEYS[2], ttl)
    else
      redis.call('expire', KEYS[2], ARGV[4])
    end
  end
end
redis.call('expire', KEYS[1], ARGV[4])
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
