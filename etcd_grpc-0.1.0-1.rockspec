-- `luarocks make` builds the native library with cargo (through the
-- Makefile) and installs it with the Lua files, like `make install`.
package = "etcd_grpc"
version = "0.1.0-1"
source = {
    url = "git+file:///dev/null",
}
description = {
    summary = "A native etcd v3 gRPC client for OpenResty, drop-in for lua-resty-etcd's v3 mode",
    license = "Apache-2.0",
}
dependencies = {
    "lua >= 5.1",
}
build = {
    type = "make",
    build_target = "build",
    install_target = "install",
    build_variables = {},
    install_variables = {
        LUA_LIB_DIR = "$(LUADIR)",
        LUA_CLIB_DIR = "$(LIBDIR)",
        INSTALL = "install",
    },
}
