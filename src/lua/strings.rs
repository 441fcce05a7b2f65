//! The Lua strings replies use over and over (field names, and the int64
//! decimals of a reply's header), kept in one Lua table per Lua state so
//! that a push is one array read.
//!
//! Making a string is the dearest step of a Lua store through the C API:
//! `lua_pushlstring` hashes the bytes and looks them up in the intern
//! table, and an int64 is first formatted. A get's reply makes about
//! twenty field names and eight int64 strings whose values rarely change
//! (cluster_id, member_id, raft_term, the revision between writes); by
//! callgrind, making them was a quarter of building the reply. The cache
//! is direct-mapped: a slot remembers what its string is (the name's
//! address and length, or the number), a miss makes the string and takes
//! the slot over. A cached string is the very string Lua would have
//! interned, so callers cannot tell.

use std::cell::RefCell;
use std::ffi::c_int;

use mlua::ffi::{self, lua_State};
use mlua::{Lua, Result as LuaResult, Table, Value};

/// Slots for field names and for numbers (powers of two).
const NAMES: usize = 1024;
const NUMBERS: usize = 128;

/// A slot number from a key: Fibonacci hashing, whose top bits depend on
/// every bit of the key (names sit a few bytes apart in the binary).
fn spread(key: u64) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 48) as usize
}

/// The cache of one Lua state: the table holding the strings (names at
/// 1..=NAMES, numbers after them) and what each slot holds.
pub struct Strings {
    table: Table,
    names: [(usize, usize); NAMES],
    numbers: [Option<(u64, bool)>; NUMBERS],
}

/// The cache of `lua`'s state, made on first use, for `f`; `None` when it
/// is in use already: LuaJIT may run a finalizer (`__gc`) in a garbage
/// collection step inside a reply's protected call, and one that made a
/// reply itself would find the cache borrowed. That reply is then built
/// without it. (The app data stays borrowed while `f` runs: nothing may
/// call `set_app_data` meanwhile.)
pub fn with<R>(lua: &Lua, f: impl FnOnce(Option<&mut Strings>) -> LuaResult<R>) -> LuaResult<R> {
    if lua.app_data_ref::<RefCell<Strings>>().is_none() {
        let table = lua.create_table_with_capacity(NAMES + NUMBERS, 0)?;
        lua.set_app_data(RefCell::new(Strings {
            table,
            names: [(0, 0); NAMES],
            numbers: [None; NUMBERS],
        }));
    }
    let Some(cell) = lua.app_data_ref::<RefCell<Strings>>() else {
        return f(None);
    };
    let out = match cell.try_borrow_mut() {
        Ok(mut strings) => f(Some(&mut strings)),
        Err(_) => f(None),
    };
    out
}

/// What to pass into the protected call at a pusher's index: the cache's
/// table, or nil without a cache.
pub fn arg(strings: &Option<&mut Strings>) -> Value {
    match strings {
        Some(s) => Value::Table(s.table.clone()),
        None => Value::Nil,
    }
}

/// Pushes cached strings inside one protected call.
pub struct Pusher<'a> {
    strings: Option<&'a mut Strings>,
    index: c_int,
}

impl<'a> Pusher<'a> {
    /// The pusher of `strings`, inside a protected call that holds
    /// [`arg`]`(&strings)` at absolute index `index`; without a cache it
    /// makes every string.
    pub fn new(strings: Option<&'a mut Strings>, index: c_int) -> Pusher<'a> {
        Pusher { strings, index }
    }

    /// Pushes `name`.
    ///
    /// # Safety
    /// Inside a protected call on `state` whose stack holds the cache's
    /// table at this pusher's index, with room for two more values.
    pub unsafe fn name(&mut self, state: *mut lua_State, name: &'static str) {
        let key = (name.as_ptr() as usize, name.len());
        let slot = spread(key.0 as u64 ^ key.1 as u64) & (NAMES - 1);
        let n = (slot + 1) as ffi::lua_Integer;
        let Some(strings) = self.strings.as_deref_mut() else {
            ffi::lua_pushlstring(state, name.as_ptr().cast(), name.len());
            return;
        };
        if strings.names[slot] == key {
            ffi::lua_rawgeti(state, self.index, n);
            return;
        }
        ffi::lua_pushlstring(state, name.as_ptr().cast(), name.len());
        store(state, self.index, n);
        // Only once the string is in the table (a push can raise).
        strings.names[slot] = key;
    }

    /// Pushes `n` (negated when `negative`) as a decimal string.
    ///
    /// # Safety
    /// As for [`Pusher::name`].
    pub unsafe fn decimal(&mut self, state: *mut lua_State, negative: bool, n: u64) {
        let key = (n, negative);
        let slot = spread(n) & (NUMBERS - 1);
        let at = (NAMES + slot + 1) as ffi::lua_Integer;
        let hit = self
            .strings
            .as_deref()
            .map(|s| s.numbers[slot] == Some(key));
        if hit == Some(true) {
            ffi::lua_rawgeti(state, self.index, at);
            return;
        }
        let mut buf = [0u8; 21];
        let text = crate::sink::decimal(&mut buf, negative, n);
        ffi::lua_pushlstring(state, text.as_ptr().cast(), text.len());
        if let Some(strings) = self.strings.as_deref_mut() {
            store(state, self.index, at);
            strings.numbers[slot] = Some(key);
        }
    }
}

/// `table[n] = <top>` for the table at `index`, leaving the string on top.
/// The table's array part holds every slot, so this does not allocate.
unsafe fn store(state: *mut lua_State, index: c_int, n: ffi::lua_Integer) {
    ffi::lua_pushvalue(state, -1);
    ffi::lua_rawseti(state, index, n);
}
