//! Rust values to Lua values: gateway-shaped bodies and HTTP-like replies.
//!
//! Replies are built with Lua's C API inside one protected call per batch
//! (`exec_raw`), not through mlua's `Table::raw_set`: in module mode mlua
//! cannot rule out allocation errors, so it wraps every single table store
//! in its own `lua_pcall`, and those per-field pcalls were the largest cost
//! of a call on the nginx thread. Inside the protected call a Lua error
//! (out of memory) unwinds only these functions, which own nothing that
//! needs dropping: they read borrowed Rust values and push onto the stack.
//!
//! Bodies are written through a [`Sink`] on the Lua stack: a get or a set
//! goes from etcd's typed answer straight to Lua tables, int64 strings
//! formatted on the stack, with no gateway-shaped tree built in between.

use std::ffi::c_int;

use mlua::ffi::{self, lua_State};
use mlua::{Lua, Result as LuaResult, Table};

use crate::error::Error;
use crate::shape::Reply;
use crate::sink::Sink;

use super::strings::{self, Pusher, Strings};

/// A finished call as `drain` hands it to Lua.
pub type Outcome = (u64, Result<Reply, Error>);

/// One reply as a Lua table (lua-resty-http's response shape).
pub fn reply(lua: &Lua, r: &Reply) -> LuaResult<Table> {
    strings::with(lua, |strings| {
        // SAFETY: the cache's table is at index 1; push_reply leaves one
        // value (the reply) above it, and owns nothing that a Lua error
        // could leak. Removing the table leaves the reply.
        unsafe {
            lua.exec_raw(strings::arg(&strings), |state| {
                push_reply(state, r, &mut Pusher::new(strings, 1));
                ffi::lua_remove(state, 1);
            })
        }
    })
}

/// Stores `outcomes` into `t` as `id, res|false, err|false` triplets from
/// index 1, in one protected call; returns how many there were.
pub fn outcomes(lua: &Lua, t: &Table, outcomes: &[Outcome]) -> LuaResult<usize> {
    // Error strings are made before entering the protected call.
    let errors: Vec<Option<String>> = outcomes
        .iter()
        .map(|(_, out)| out.as_ref().err().map(|e| e.to_string()))
        .collect();
    strings::with(lua, |strings| {
        // SAFETY: the closure reads `t` (argument 1), the cache's table
        // (argument 2) and borrowed values only, and empties the stack.
        unsafe { fill(lua, t, strings, outcomes, &errors) }
    })?;
    Ok(outcomes.len())
}

/// `outcomes` into `t`, in one protected call.
///
/// # Safety
/// Nothing in `outcomes` may need dropping if a Lua error unwinds.
unsafe fn fill(
    lua: &Lua,
    t: &Table,
    strings: Option<&mut Strings>,
    outcomes: &[Outcome],
    errors: &[Option<String>],
) -> LuaResult<()> {
    let cache = strings::arg(&strings);
    lua.exec_raw::<()>((t, cache), |state| {
        let mut pusher = Pusher::new(strings, 2);
        for (i, ((id, out), err)) in outcomes.iter().zip(errors).enumerate() {
            let base = (i * 3) as ffi::lua_Integer;
            ffi::lua_pushnumber(state, *id as ffi::lua_Number);
            ffi::lua_rawseti(state, 1, base + 1);
            match (out, err) {
                (Ok(r), _) => push_reply(state, r, &mut pusher),
                _ => ffi::lua_pushboolean(state, 0),
            }
            ffi::lua_rawseti(state, 1, base + 2);
            match err {
                Some(e) => push_bytes(state, e.as_bytes()),
                None => ffi::lua_pushboolean(state, 0),
            }
            ffi::lua_rawseti(state, 1, base + 3);
        }
        ffi::lua_settop(state, 0);
    })
}

unsafe fn push_bytes(state: *mut lua_State, b: &[u8]) {
    ffi::lua_pushlstring(state, b.as_ptr().cast(), b.len());
}

/// `t[k] = <value on top>` for the table just below the top.
unsafe fn set_field(state: *mut lua_State, strings: &mut Pusher, k: &'static str) {
    strings.name(state, k);
    ffi::lua_insert(state, -2);
    ffi::lua_rawset(state, -3);
}

fn capacity(n: usize) -> c_int {
    c_int::try_from(n).unwrap_or(c_int::MAX)
}

/// Writes shaped values straight onto the Lua stack: the table cjson would
/// have decoded from the gateway's JSON.
struct LuaSink<'p, 'c>(*mut lua_State, &'p mut Pusher<'c>);

impl<'p, 'c> LuaSink<'p, 'c> {
    /// # Safety
    /// Only inside a protected call on `state` (a push may raise on out of
    /// memory), with nothing on the stack the writes could disturb: each
    /// value ends up one slot above where the stack was. `strings` is the
    /// string cache of this call.
    unsafe fn new(state: *mut lua_State, strings: &'p mut Pusher<'c>) -> Self {
        LuaSink(state, strings)
    }

    fn decimal(&mut self, negative: bool, n: u64) {
        unsafe { self.1.decimal(self.0, negative, n) }
    }

    fn table(&mut self, narr: usize, nrec: usize) {
        // SAFETY (all methods): `new`'s contract; every push has room
        // because each map or list checks for four more slots per level.
        unsafe {
            ffi::luaL_checkstack(self.0, 4, c"etcd_grpc: reply nested too deep".as_ptr());
            ffi::lua_createtable(self.0, capacity(narr), capacity(nrec));
        }
    }
}

impl Sink for LuaSink<'_, '_> {
    fn str(&mut self, b: &[u8]) {
        unsafe { push_bytes(self.0, b) }
    }
    fn int(&mut self, n: i64) {
        self.decimal(n < 0, n.unsigned_abs());
    }
    fn uint(&mut self, n: u64) {
        self.decimal(false, n);
    }
    fn number(&mut self, n: i64) {
        unsafe { ffi::lua_pushnumber(self.0, n as ffi::lua_Number) }
    }
    fn boolean(&mut self, b: bool) {
        unsafe { ffi::lua_pushboolean(self.0, c_int::from(b)) }
    }
    fn map(&mut self, cap: usize) {
        self.table(0, cap);
    }
    fn list(&mut self, cap: usize) {
        self.table(cap, 0);
    }
    fn field(&mut self, name: &'static str) {
        unsafe { set_field(self.0, self.1, name) }
    }
    fn item(&mut self, i: usize) {
        unsafe { ffi::lua_rawseti(self.0, -2, i as ffi::lua_Integer + 1) }
    }
}

/// Pushes `status`, `reason`, `headers` (with `X-Etcd-Index` from
/// `header.revision`), `has_body` and `body`.
unsafe fn push_reply(state: *mut lua_State, r: &Reply, strings: &mut Pusher) {
    ffi::luaL_checkstack(state, 6, c"etcd_grpc: no stack for a reply".as_ptr());
    ffi::lua_createtable(state, 0, 5);
    ffi::lua_pushnumber(state, ffi::lua_Number::from(r.status));
    set_field(state, strings, "status");
    strings.name(state, reason(r.status));
    set_field(state, strings, "reason");
    ffi::lua_createtable(state, 0, 2);
    strings.name(state, "application/json");
    set_field(state, strings, "Content-Type");
    if let Some(rev) = r.revision {
        strings.decimal(state, rev < 0, rev.unsigned_abs());
        set_field(state, strings, "X-Etcd-Index");
    }
    set_field(state, strings, "headers");
    ffi::lua_pushboolean(state, 1);
    set_field(state, strings, "has_body");
    r.body.write(&mut LuaSink::new(state, strings));
    set_field(state, strings, "body");
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        409 => "Conflict",
        429 => "Too Many Requests",
        _ => "",
    }
}
