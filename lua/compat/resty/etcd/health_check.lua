-- Drop-in for lua-resty-etcd's resty.etcd.health_check: the same module
-- as etcd_grpc.health_check (one state, whichever name loads it).

return require "etcd_grpc.health_check"
