-- cycler_lb.lua: the balancer and admin code of cyclerd's nginx driver in
-- dynamic mode. Written by cyclerd; do not edit.
--
-- Each service's backend set lives in the lua_shared_dict "cycler" as the
-- exact body the driver PUT (format below), under "set:<service>". A counter
-- "stamp:<service>" grows on every change, so each worker re-parses a set
-- only when it changed.
--
-- Body format (every line ends in "\n"):
--   cycler-backends 1
--   generation <N>                 (decimal, up to 20 digits, no leading 0)
--   backend <ip> <port> <id>       (one or more; id is percent-escaped)
--
-- The module is loaded once per worker with dofile from the config blocks,
-- so it needs neither lua_package_path nor init_by_lua (both may appear only
-- once per http block, and the operator's nginx.conf may already set them).

local balancer = require "ngx.balancer"
local bit = require "bit"

local dict = ngx.shared.cycler
local MAX_BACKENDS = 4096
local HEADER = "cycler-backends 1"

local _M = {}

-- cache[svc] = { stamp = n, peers = { {host=, port=}, ... }, rr = i }
local cache = {}

-- gen_less compares two decimal generations without converting them to Lua
-- numbers, which would lose precision above 2^53.
local function gen_less(a, b)
    if #a ~= #b then
        return #a < #b
    end
    return a < b
end

-- valid_ip accepts a dotted-quad IPv4 address or something made of IPv6
-- characters; ngx.balancer makes the final check.
local function valid_ip(a)
    if a:find(":", 1, true) then
        return #a <= 45 and a:match("^[%x:%.]+$") ~= nil
    end
    local o1, o2, o3, o4 = a:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
    for _, o in ipairs({ o1, o2, o3, o4 }) do
        if #o > 3 or tonumber(o) > 255 or (#o > 1 and o:sub(1, 1) == "0") then
            return false
        end
    end
    return o4 ~= nil
end

-- parse checks body strictly and returns its generation and peers, or nil
-- and a reason.
local function parse(body)
    if #body == 0 or body:sub(-1) ~= "\n" then
        return nil, nil, "body must be non-empty and end with a newline"
    end
    local gen
    local peers = {}
    local n = 0
    for line in body:gmatch("([^\n]*)\n") do
        n = n + 1
        if n == 1 then
            if line ~= HEADER then
                return nil, nil, "line 1 must be \"" .. HEADER .. "\""
            end
        elseif n == 2 then
            gen = line:match("^generation (%d+)$")
            if not gen or #gen > 20 or (#gen > 1 and gen:sub(1, 1) == "0") then
                return nil, nil, "line 2 must be \"generation N\""
            end
        else
            local addr, port = line:match("^backend ([%x%.:]+) (%d+) [%w%%%._~%-]+$")
            port = tonumber(port)
            if not addr or not valid_ip(addr) or not port or port < 1 or port > 65535 then
                return nil, nil, "line " .. n .. " must be \"backend IP PORT ID\" with a port of 1-65535"
            end
            if #peers >= MAX_BACKENDS then
                return nil, nil, "more than " .. MAX_BACKENDS .. " backends"
            end
            -- ngx.balancer parses host like a URL: IPv6 needs brackets.
            if addr:find(":", 1, true) then
                addr = "[" .. addr .. "]"
            end
            peers[#peers + 1] = { host = addr, port = port }
        end
    end
    if not gen then
        return nil, nil, "missing generation line"
    end
    if #peers == 0 then
        return nil, nil, "empty backend set refused"
    end
    return gen, peers
end

-- current returns the worker's parsed copy of svc's set, re-reading the
-- dict only when the stamp moved.
local function current(svc)
    local stamp = dict:get("stamp:" .. svc)
    if not stamp then
        return nil
    end
    local c = cache[svc]
    if c and c.stamp == stamp then
        return c
    end
    local body = dict:get("set:" .. svc)
    if not body then
        return nil
    end
    local _, peers, err = parse(body)
    if not peers then
        ngx.log(ngx.ERR, "cycler: stored set of ", svc, " is invalid: ", err)
        return nil
    end
    -- A writer may have moved the stamp after our read; the next request
    -- sees the newer stamp and re-reads, so the cache converges.
    c = { stamp = stamp, peers = peers, rr = c and c.rr or 0 }
    cache[svc] = c
    return c
end

-- balance picks the next peer of svc round robin. With no set it leaves the
-- placeholder (a server marked down) in charge, and nginx answers 502.
function _M.balance(svc)
    local c = current(svc)
    if not c then
        ngx.log(ngx.WARN, "cycler: no backend set stored for ", svc, "; answering 502")
        return
    end
    local n = #c.peers
    if not balancer.get_last_failure() and n > 1 then
        -- First try: allow one retry per other peer (capped), so a dead
        -- backend fails over as proxy_next_upstream allows.
        balancer.set_more_tries(math.min(n - 1, 3))
    end
    c.rr = c.rr % n + 1
    local p = c.peers[c.rr]
    local ok, err = balancer.set_current_peer(p.host, p.port)
    if not ok then
        ngx.log(ngx.ERR, "cycler: set peer ", p.host, ":", p.port, " for ", svc, ": ", err)
    end
end

local function reply(status, msg)
    ngx.status = status
    ngx.header["Content-Type"] = "text/plain"
    ngx.say(msg)
end

-- authorized compares digests of the given and expected secrets in time
-- that does not depend on where they differ.
local function authorized(digest)
    local given = ngx.req.get_headers()["X-Cycler-Admin-Secret"]
    if type(given) ~= "string" then
        return false
    end
    local got = ngx.encode_base64(ngx.sha1_bin(given))
    if #got ~= #digest then
        return false
    end
    local diff = 0
    for i = 1, #got do
        diff = bit.bor(diff, bit.bxor(got:byte(i), digest:byte(i)))
    end
    return diff == 0
end

-- lock serialises PUTs of one service across workers, so the generation
-- check and the store happen as one step. The key expires by itself in 5s
-- should a worker die holding it.
local function lock(svc)
    for _ = 1, 200 do
        local ok, err = dict:add("lock:" .. svc, true, 5)
        if ok then
            return true
        end
        if err ~= "exists" then
            return nil, err
        end
        ngx.sleep(0.01)
    end
    return nil, "another update of this service is in progress"
end

local function put(svc)
    ngx.req.read_body()
    local body = ngx.req.get_body_data()
    if not body then
        if ngx.req.get_body_file() then
            return reply(413, "body larger than the admin body buffer")
        end
        return reply(400, "empty body")
    end
    local gen, _, err = parse(body)
    if not gen then
        return reply(400, "bad backend set: " .. err)
    end
    local ok, lerr = lock(svc)
    if not ok then
        return reply(503, "busy: " .. lerr)
    end
    local key = "set:" .. svc
    local old = dict:get(key)
    local old_gen = old and old:match("^[^\n]*\ngeneration (%d+)\n")
    if old_gen and gen_less(gen, old_gen) then
        dict:delete("lock:" .. svc)
        return reply(409, "generation " .. gen .. " is older than the stored generation " .. old_gen)
    end
    if old == body then
        dict:delete("lock:" .. svc)
        return reply(200, "unchanged generation " .. gen)
    end
    local sok, serr = dict:safe_set(key, body)
    if not sok then
        dict:delete("lock:" .. svc)
        return reply(507, "store: " .. serr)
    end
    dict:incr("stamp:" .. svc, 1, 0)
    dict:delete("lock:" .. svc)
    return reply(200, "stored generation " .. gen)
end

-- admin serves GET (the stored set) and PUT (a new set) for svc. digest is
-- base64(SHA-1(secret)); see the driver's package doc.
function _M.admin(svc, digest)
    local method = ngx.req.get_method()
    if method ~= "GET" and method ~= "PUT" then
        ngx.header["Allow"] = "GET, PUT"
        return reply(405, "method not allowed; use GET or PUT")
    end
    if not authorized(digest) then
        return reply(401, "missing or wrong X-Cycler-Admin-Secret")
    end
    if method == "PUT" then
        return put(svc)
    end
    local body = dict:get("set:" .. svc)
    if not body then
        return reply(404, "no backend set stored for " .. svc)
    end
    ngx.header["Content-Type"] = "text/plain"
    ngx.print(body)
end

package.loaded.cycler_lb = _M
return _M
