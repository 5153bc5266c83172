//! Lua run inside Redis, so each check-and-write is atomic however many workers race.

use std::sync::LazyLock;

use redis::Script;

/// The version guard. `KEYS[1]` the object key; `ARGV[1]` the JSON, `ARGV[2]` its version, `ARGV[3]` the
/// TTL in ms. Writes unless the stored object has a *higher* version (an equal one is rewritten, which only
/// refreshes its TTL). Returns 1 when written, 0 when a newer object was kept.
pub static PUT_IF_NOT_OLDER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, obj = pcall(cjson.decode, cur)
  if ok and type(obj) == 'table' then
    local stored = tonumber(obj['version'])
    if stored and stored > tonumber(ARGV[2]) then
      return 0
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
"#,
    )
});

/// Releases a fill lock only if we still hold it (`ARGV[1]` is our token), so a lock that expired and was
/// taken by another reader is never released by us.
pub static UNLOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#,
    )
});
