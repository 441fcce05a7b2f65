-- The raw serializer: values are Lua strings stored as they are.

local type = type


local _M = { _VERSION = "0.1.0" }


function _M.serialize(v)
    if type(v) ~= "string" then
        return nil, "unsupported type for " .. type(v)
    end
    return v
end


function _M.deserialize(v)
    return v
end


return _M
