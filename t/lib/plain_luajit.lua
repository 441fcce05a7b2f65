-- Run by t/phases.t with plain luajit (no nginx): the blocking path.
-- usage: luajit plain_luajit.lua <http_host> <mode>   (mode: roundtrip | timeout)
local etcd = require "etcd_grpc"
local host, mode = arg[1], arg[2]
local cli = assert(etcd.new({ http_host = host, serializer = "raw" }))

if mode == "roundtrip" then
    local res, err = cli:set("/plain/k", "from luajit")
    if res then
        res, err = cli:get("/plain/k")
    end
    print(res and res.body.kvs[1].value or ("failed: " .. tostring(err)))
else
    local t0 = os.time()
    local res, err = cli:get("/plain/k", { timeout = 1 })
    print(tostring(res) .. " " .. tostring(err) .. " " .. tostring(os.time() - t0 <= 3))
end
