-- Variant (d) of scripts/bench.sh: graylane's job for the 20-lane config
-- (scripts/bench/configs.py, lanes_c) as an Envoy Lua filter, written as a
-- Lua author would write it: the rules in priority order over memoized
-- header/cookie/query reads, a hash split of the user id (djb2, not xxh64:
-- LuaJIT has no 64-bit hash at hand), the baggage member replaced or
-- appended, x-graylane set, the cluster header removed, the lane in dynamic
-- metadata (graylane sets filter state).
local find, sub, byte, gmatch, match = string.find, string.sub, string.byte, string.gmatch, string.match
local concat = table.concat
local NONE = {}

local function hdr(r, name)
  local v = r.cache[name]
  if v == nil then
    v = r.h:get(name) or NONE
    r.cache[name] = v
  end
  if v == NONE then return nil end
  return v
end

local function cookie(r, name)
  if r.cookies == nil then
    local t = {}
    local c = hdr(r, "cookie")
    if c then
      for k, v in gmatch(c, "([^=;%s]+)=([^;]*)") do
        if t[k] == nil then t[k] = v end
      end
    end
    r.cookies = t
  end
  return r.cookies[name]
end

local function query(r, name)
  if r.query == nil then
    local t = {}
    local q = match(hdr(r, ":path") or "", "%?([^#]*)")
    if q then
      for k, v in gmatch(q, "([^&=]+)=([^&]*)") do
        if t[k] == nil then t[k] = v end
      end
    end
    r.query = t
  end
  return r.query[name]
end

local function djb2(s)
  local h = 5381
  for i = 1, #s do h = (h * 33 + byte(s, i)) % 4294967296 end
  return h
end

-- {lane, predicate}, in priority order: hdr-0..9 by x-region, ck-0..4 by
-- the canary cookie, q-0..2 by the lane query parameter, then ua-android
-- and the 10 % sticky split.
local RULES = {}
local function add(lane, predicate) RULES[#RULES + 1] = {lane, predicate} end
for i = 0, 9 do
  local want = "region-" .. i
  add("hdr-" .. i, function(r) return hdr(r, "x-region") == want end)
end
for i = 0, 4 do
  local want = "beta-" .. i
  add("ck-" .. i, function(r) return cookie(r, "canary") == want end)
end
for i = 0, 2 do
  local want = "q-" .. i
  add(want, function(r) return query(r, "lane") == want end)
end
add("ua-android", function(r)
  local ua, v = hdr(r, "user-agent"), hdr(r, "x-app-version")
  return ua ~= nil and find(ua, "Android", 1, true) ~= nil and v ~= nil and sub(v, 1, 2) == "9."
end)
add("sticky", function(r)
  local id = hdr(r, "x-user-id")
  return id ~= nil and djb2("bench:" .. id) % 10000 < 1000
end)
assert(#RULES == 20)

function envoy_on_request(handle)
  local h = handle:headers()
  local r = {h = h, cache = {}}
  local lane = nil
  for i = 1, #RULES do
    local rule = RULES[i]
    if rule[2](r) then lane = rule[1]; break end
  end
  local bag = h:get("baggage")
  local kept, removed = {}, false
  if bag then
    for m in gmatch(bag, "[^,]+") do
      local member = match(m, "^%s*(.-)%s*$")
      if member ~= "" then
        if match(member, "^([^=%s;]+)") == "lane" then removed = true else kept[#kept + 1] = member end
      end
    end
  end
  if lane then
    kept[#kept + 1] = "lane=" .. lane
    h:replace("x-graylane", lane)
  elseif h:get("x-graylane") then
    h:remove("x-graylane")
  end
  if lane or removed then
    if #kept > 0 then h:replace("baggage", concat(kept, ",")) else h:remove("baggage") end
  end
  if h:get("x-graylane-cluster") then h:remove("x-graylane-cluster") end
  handle:streamInfo():dynamicMetadata():set("graylane", "lane", lane or "base")
end
