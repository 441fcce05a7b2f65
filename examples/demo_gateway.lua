-- The demo gateway's Lua (examples/nginx.conf): routes in etcd under
-- /demo/routes/<id> as {"uri": ..., "upstream": "host:port"}, mirrored by
-- every worker; requests are routed by exact uri from the mirror.

local etcd = require "etcd_grpc"
local cjson = require "cjson.safe"

local ngx = ngx
local pairs = pairs
local type = type
local tostring = tostring

local PREFIX = "/demo/routes/"
local PUBLISH_EVERY = 0.5

local _M = {}

local cli, routes
local by_uri, dirty = {}, true


local function publish()
    local s = etcd.stats()
    s.worker = ngx.worker.id()
    for _, m in ipairs(s.mirrors) do
        s.last_error = s.last_error or m.last_error
    end
    ngx.shared.demo_status:set("worker:" .. ngx.worker.id(), cjson.encode(s), 5)
end


function _M.init_worker(endpoint)
    local err
    cli, err = etcd.new({ http_host = endpoint, timeout = 5 })
    if not cli then
        ngx.log(ngx.ERR, "demo: ", err)
        return
    end
    routes, err = cli:mirror(PREFIX, { on_change = function() dirty = true end })
    if not routes then
        ngx.log(ngx.ERR, "demo: failed to load the routes: ", err)
        return
    end
    ngx.timer.every(PUBLISH_EVERY, publish)
    ngx.timer.at(0, publish)
end


local function reply(status, body)
    ngx.status = status
    ngx.header["Content-Type"] = "application/json"
    ngx.say(cjson.encode(body))
    return ngx.exit(status)
end


function _M.admin(id)
    local method = ngx.req.get_method()
    local res, err
    if method == "PUT" then
        ngx.req.read_body()
        local route = cjson.decode(ngx.req.get_body_data() or "")
        if type(route) ~= "table" or type(route.uri) ~= "string"
           or type(route.upstream) ~= "string" then
            return reply(400, { error = 'want {"uri": "/path", "upstream": "host:port"}' })
        end
        res, err = cli:set(PREFIX .. id, { uri = route.uri, upstream = route.upstream })
    elseif method == "DELETE" then
        res, err = cli:delete(PREFIX .. id)
    else
        return reply(405, { error = "PUT or DELETE" })
    end
    if not res then
        return reply(502, { error = err })
    end
    return reply(200, { id = id, revision = res.body.header.revision })
end


function _M.route()
    if not routes then
        return reply(503, { error = "no routes loaded" })
    end
    if dirty then
        -- rebuilt after changes only: the mirror is a table, this is cheap
        dirty = false
        by_uri = {}
        for _, r in routes:pairs() do
            if type(r) == "table" and r.uri then
                by_uri[r.uri] = r
            end
        end
    end
    local r = by_uri[ngx.var.uri]
    if not r then
        ngx.header["X-Worker-Pid"] = ngx.worker.pid()
        return reply(404, { error = "no route for " .. ngx.var.uri })
    end
    ngx.var.target = r.upstream
end


local function workers()
    local dict, list = ngx.shared.demo_status, {}
    for _, k in ipairs(dict:get_keys(0)) do
        local s = cjson.decode(dict:get(k) or "")
        if s then
            list[#list + 1] = s
        end
    end
    table.sort(list, function(a, b) return a.worker < b.worker end)
    return list
end


function _M.status_json()
    ngx.say(cjson.encode({ workers = workers() }))
end


local function esc(v)
    return (tostring(v == nil and "" or v):gsub("[<>&]", { ["<"] = "&lt;", [">"] = "&gt;",
                                                         ["&"] = "&amp;" }))
end


function _M.status_html()
    local out = { "<!doctype html><title>etcd_grpc demo</title>",
                  "<meta http-equiv=refresh content=2><h1>etcd_grpc: per-worker status</h1>" }
    for _, s in ipairs(workers()) do
        out[#out + 1] = ("<h2>worker %s (pid %s)</h2><table border=1>"):format(s.worker, s.pid)
        for _, f in ipairs({ "connections", "watch_streams", "watchers", "lease_keepers",
                             "calls", "in_flight", "reconnects", "last_error" }) do
            out[#out + 1] = ("<tr><th>%s<td>%s"):format(f, esc(s[f]))
        end
        out[#out + 1] = "</table><p>mirrors:<table border=1><tr><th>prefix<th>keys"
                        .. "<th>revision<th>resyncs<th>events<th>last error"
        for _, m in ipairs(s.mirrors or {}) do
            out[#out + 1] = ("<tr><td>%s<td>%s<td>%s<td>%s<td>%s<td>%s"):format(
                esc(m.prefix), m.keys, m.revision, m.resyncs, m.events, esc(m.last_error))
        end
        out[#out + 1] = "</table>"
    end
    ngx.say(table.concat(out, "\n"))
end


return _M
