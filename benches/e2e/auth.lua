-- wrk script for the auth rows. Arguments (after --): <shape> <mode> <prefix>
--   shape  login    POST /auth/login {"appID","provider","token"}   (drawbridge)
--          check    GET <the URL's path>, Authorization: Bearer <token>  (/auth/check: nginx
--                   auth_request; /auth/check/sync: drawbridge's door, the path under it checked)
--          aggregator POST /auth/webhook {"appID","provider","token"} (drawbridge, no session)
--          webhook  POST /auth {"appID","provider","token"}         (the webhook itself)
--   mode   hit      one token for every request (answered from the cache after the first)
--          miss     a new token for every request: "<prefix>-<n>", prefix unique per run
local shape, mode, prefix = "login", "hit", "run"
local n = 0
local json = { ["Content-Type"] = "application/json" }

function init(args)
  shape = args[1] or shape
  mode = args[2] or mode
  prefix = args[3] or prefix
end

local function token()
  if mode == "hit" then
    return "hit-token"
  end
  n = n + 1
  return "miss-" .. prefix .. "-" .. n
end

local function body(t)
  return '{"appID":"bench-app","provider":"bench","token":"' .. t .. '"}'
end

function request()
  local t = token()
  if shape == "check" then
    return wrk.format("GET", wrk.path, { ["Authorization"] = "Bearer " .. t }, nil)
  elseif shape == "webhook" then
    return wrk.format("POST", "/auth", json, body(t))
  elseif shape == "aggregator" then
    return wrk.format("POST", "/auth/webhook", json, body(t))
  end
  return wrk.format("POST", "/auth/login", json, body(t))
end
