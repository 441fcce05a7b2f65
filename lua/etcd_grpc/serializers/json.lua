-- The default serializer: values are stored as JSON text (cjson), exactly
-- the bytes lua-resty-etcd writes, so both libraries read each other's data.

local cjson = require "cjson.safe"

local encode = cjson.encode
local decode = cjson.decode


local _M = { _VERSION = "0.1.0" }


function _M.serialize(v)
    return encode(v)
end


function _M.deserialize(v)
    return decode(v)
end


return _M
