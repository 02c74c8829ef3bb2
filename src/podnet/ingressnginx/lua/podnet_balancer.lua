-- podnet's endpoint balancer for nginx: ingress-nginx's upstream_balancer, kept small.
--
-- The controller POSTs the ready endpoints of every upstream to /configuration/backends (a
-- server on 127.0.0.1 of the controller pod, as ingress-nginx's port 10246), one line per
-- upstream: "NAME IP:PORT IP:PORT ...". The document lives in a shared dict, so every worker
-- and every generation of workers after a reload sees the same one; each worker re-reads it
-- when the shared version number moved (one dict lookup per request, where ingress-nginx polls
-- every second), so an endpoint change is served by the next request, without a reload.
--
-- rewrite(): ingress-nginx's balancer.rewrite — an upstream without endpoints answers 503 in
-- the rewrite phase, before the access phase (allowlist-source-range). balance(): round robin
-- over the upstream's endpoints, one more try per attempt (proxy_next_upstream moves on to the
-- next endpoint when one refuses), as balancer.balance does.

local ngx_balancer = require("ngx.balancer")

local shared = ngx.shared.podnet_backends
local _M = {}

local peers = {}       -- this worker's copy: upstream name -> array of {host, port}
local position = {}    -- upstream name -> index of the endpoint used last (round robin)
local version = nil    -- the shared version `peers` was parsed from

local function parse(document)
  local backends = {}
  for line in document:gmatch("[^\n]+") do
    local name
    local endpoints = {}
    for word in line:gmatch("%S+") do
      if name == nil then
        name = word
      else
        -- "10.244.1.5:8080" or "[fd00::5]:8080"
        local host, port = word:match("^%[(.+)%]:(%d+)$")
        if host == nil then
          host, port = word:match("^([^:]+):(%d+)$")
        end
        if host ~= nil then
          endpoints[#endpoints + 1] = { host, tonumber(port) }
        end
      end
    end
    if name ~= nil and #endpoints > 0 then
      backends[name] = endpoints
    end
  end
  return backends
end

local function sync()
  local current = shared:get("version")
  if current ~= version then
    peers = parse(shared:get("backends") or "")
    version = current
  end
end

function _M.rewrite()
  sync()
  local endpoints = peers[ngx.var.proxy_upstream_name]
  if endpoints == nil then
    ngx.status = ngx.HTTP_SERVICE_UNAVAILABLE
    return ngx.exit(ngx.status)
  end
  ngx.ctx.podnet_endpoints = endpoints
end

function _M.balance()
  local endpoints = ngx.ctx.podnet_endpoints
  if endpoints == nil then
    return  -- rewrite() answered already; never reached
  end
  local name = ngx.var.proxy_upstream_name
  local index = position[name]
  if index == nil then
    index = math.random(#endpoints)  -- workers start at different endpoints
  end
  index = index % #endpoints + 1
  position[name] = index
  local peer = endpoints[index]
  ngx_balancer.set_more_tries(1)
  local ok, err = ngx_balancer.set_current_peer(peer[1], peer[2])
  if not ok then
    ngx.log(ngx.ERR, "setting upstream peer ", peer[1], ":", peer[2], ": ", err)
  end
end

-- POST: replace the document (201); GET: the document nginx balances over now.
function _M.configure()
  if ngx.req.get_method() == "GET" then
    ngx.header["X-Podnet-Version"] = tostring(shared:get("version") or 0)
    ngx.print(shared:get("backends") or "")
    return
  end
  if ngx.req.get_method() ~= "POST" then
    return ngx.exit(ngx.HTTP_NOT_ALLOWED)
  end
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if body == nil then
    local path = ngx.req.get_body_file()
    if path ~= nil then
      local file = io.open(path, "rb")
      body = file:read("*a")
      file:close()
    end
  end
  local ok, err = shared:set("backends", body or "")
  if not ok then
    ngx.status = ngx.HTTP_INTERNAL_SERVER_ERROR
    ngx.say("cannot store the backends: ", err)
    return ngx.exit(ngx.status)
  end
  shared:incr("version", 1, 0)
  ngx.status = ngx.HTTP_CREATED
end

-- The controller's /healthz: nginx runs and has been given its endpoints once.
function _M.healthz()
  if shared:get("version") == nil then
    ngx.status = ngx.HTTP_SERVICE_UNAVAILABLE
    ngx.say("no endpoints configured yet")
    return ngx.exit(ngx.status)
  end
  ngx.status = ngx.HTTP_OK
end

return _M
