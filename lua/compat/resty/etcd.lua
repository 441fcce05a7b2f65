-- Drop-in for lua-resty-etcd: with "<etcd_grpc>/lua/compat/?.lua" placed in
-- lua_package_path before lua-resty-etcd's own directory, existing code
-- that does `require("resty.etcd").new(opts)` gets an etcd_grpc client,
-- with no edit.

local etcd_grpc = require "etcd_grpc"


local _M = { _VERSION = etcd_grpc._VERSION, version = 0.9 }


function _M.new(opts)
    return etcd_grpc.new(opts)
end


return _M
