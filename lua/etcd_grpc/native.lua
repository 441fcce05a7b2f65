-- Loads the Rust library (libetcd_grpc_core.so). The one place that knows
-- its name; fails with one message that says what was searched.

local ok, core = pcall(require, "etcd_grpc_core")
if not ok then
    error("etcd_grpc: failed to load the native library 'etcd_grpc_core' "
          .. "(libetcd_grpc_core.so or etcd_grpc_core.so) from package.cpath '"
          .. package.cpath .. "': " .. tostring(core), 2)
end

return core
