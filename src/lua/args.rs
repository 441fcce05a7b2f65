//! Lua argument tables to validated requests. Every malformed value becomes
//! an `InvalidArgument` error naming the field, never a panic.

use mlua::{Lua, MultiValue, Table, Value as LuaValue};

use crate::auth::Credentials;
use crate::connection::{Config, UNLIMITED};
use crate::error::{Error, Result};
use crate::metadata::Metadata;
use crate::ops::Op;
use crate::pb::etcdserverpb::{
    range_request, watch_create_request, DeleteRangeRequest as PbDeleteRangeRequest,
    LeaseGrantRequest as PbLeaseGrantRequest, LeaseTimeToLiveRequest as PbLeaseTimeToLiveRequest,
    PutRequest as PbPutRequest, RangeRequest as PbRangeRequest,
    WatchCreateRequest as PbWatchCreateRequest,
};
use crate::tls::{Secret, Sources as TlsSources, Tls};

/// A malformed argument.
pub fn bad(msg: String) -> Error {
    Error::InvalidArgument(msg)
}

/// Where named fields are read from: a Lua table, or the [`Fields`] read
/// out of one at once.
pub trait Get {
    /// The raw value of field `name` (nil when absent).
    fn get(&self, name: &str) -> Result<LuaValue>;
}

impl Get for Table {
    fn get(&self, name: &str) -> Result<LuaValue> {
        self.raw_get(name).map_err(|e| bad(e.to_string()))
    }
}

/// The fields an operation reads, taken out of its argument table in one
/// protected call. Through mlua every `raw_get` makes its key string in a
/// protected call of its own (a `lua_pcall` each, in module mode): for a
/// `range` those nine calls were a quarter of all instructions per call.
pub struct Fields {
    names: &'static [&'static str],
    values: Vec<LuaValue>,
}

impl Fields {
    /// Reads `names` from `t`, in one protected call. The table is walked
    /// with `lua_next` rather than asked for each name: a call sets two or
    /// three of the up to nine fields an operation knows, and each `rawget`
    /// needs its key string made (hashed and interned) first.
    pub fn read(lua: &Lua, t: &Table, names: &'static [&'static str]) -> Result<Fields> {
        // SAFETY: the closure finds `t` at index 1 and pushes one nil per
        // name (slots 2..=n+1), then walks `t`, moving the value of every
        // string key in `names` into its slot; it only reads key strings
        // (lua_tolstring on a string key does not convert it, so the walk
        // stays valid). lua_next and the pushes raise only when out of
        // memory (luaL_checkstack also when the stack cannot grow), and
        // nothing here needs dropping. Removing `t` leaves the values,
        // converted by mlua after the protected call.
        let values = unsafe {
            lua.exec_raw::<MultiValue>(t, |state| {
                use mlua::ffi;
                let room = std::ffi::c_int::try_from(names.len() + 3).unwrap_or(i32::MAX);
                ffi::luaL_checkstack(state, room, c"etcd_grpc: no stack for arguments".as_ptr());
                for _ in names {
                    ffi::lua_pushnil(state);
                }
                ffi::lua_pushnil(state);
                while ffi::lua_next(state, 1) != 0 {
                    let mut slot = None;
                    if ffi::lua_type(state, -2) == ffi::LUA_TSTRING {
                        let mut len = 0;
                        let p = ffi::lua_tolstring(state, -2, &mut len);
                        let key = std::slice::from_raw_parts(p.cast::<u8>(), len);
                        slot = names.iter().position(|n| n.as_bytes() == key);
                    }
                    match slot {
                        Some(i) => ffi::lua_replace(state, i as std::ffi::c_int + 2),
                        None => ffi::lua_pop(state, 1),
                    }
                }
                ffi::lua_remove(state, 1);
            })
        }
        .map_err(|e| bad(e.to_string()))?;
        Ok(Fields {
            names,
            values: values.into_vec(),
        })
    }
}

impl Get for Fields {
    fn get(&self, name: &str) -> Result<LuaValue> {
        let i = self.names.iter().position(|n| *n == name);
        Ok(i.and_then(|i| self.values.get(i).cloned())
            .unwrap_or(LuaValue::Nil))
    }
}

/// An optional int64 field (nil is 0).
pub fn int(t: &impl Get, name: &str) -> Result<i64> {
    let v: LuaValue = t.get(name)?;
    match v {
        LuaValue::Nil => Ok(0),
        v => int_value(&v, name),
    }
}

/// An int64: a Lua integer-valued number, or a decimal string (lease ids
/// exceed 2^53, so callers pass the gateway's strings back).
pub fn int_value(v: &LuaValue, name: &str) -> Result<i64> {
    match *v {
        LuaValue::Integer(n) => Ok(n),
        LuaValue::Number(n) if n.is_finite() && n.fract() == 0.0 && n.abs() < 9.2e18 => {
            Ok(n as i64)
        }
        LuaValue::String(ref s) => {
            let s = s
                .to_str()
                .map_err(|_| bad(format!("{name} must be integer")))?;
            s.trim()
                .parse::<i64>()
                .map_err(|_| bad(format!("{name} must be integer")))
        }
        _ => Err(bad(format!("{name} must be integer"))),
    }
}

/// What an enum field accepts: etcd's names, and the numbers it knows.
pub struct EnumKind {
    /// The number of a name (`"ASCEND"`), if etcd has it.
    pub by_name: fn(&str) -> Option<i32>,
    /// Whether etcd knows the number.
    pub known: fn(i32) -> bool,
}

/// `sort_order`.
pub const SORT_ORDER: EnumKind = EnumKind {
    by_name: |n| range_request::SortOrder::from_str_name(n).map(|v| v as i32),
    known: |n| range_request::SortOrder::try_from(n).is_ok(),
};

/// `sort_target`.
pub const SORT_TARGET: EnumKind = EnumKind {
    by_name: |n| range_request::SortTarget::from_str_name(n).map(|v| v as i32),
    known: |n| range_request::SortTarget::try_from(n).is_ok(),
};

/// A watch's `filters`.
pub const FILTER: EnumKind = EnumKind {
    by_name: |n| watch_create_request::FilterType::from_str_name(n).map(|v| v as i32),
    known: |n| watch_create_request::FilterType::try_from(n).is_ok(),
};

/// An enum field given by name or number (nil is 0), as the gateway's
/// decoder accepts it. A number etcd does not know is refused like an
/// unknown name, before it is sent: the gateway passes such numbers on,
/// and etcd 3.5.1 crashes (nil sorter) on a Range with an unknown
/// sort_target, taking the member down.
pub fn enum_value(v: &LuaValue, name: &str, kind: &EnumKind) -> Result<i32> {
    match v {
        LuaValue::Nil => Ok(0),
        LuaValue::String(s) => {
            let text = s.to_string_lossy();
            (kind.by_name)(&text)
                .ok_or_else(|| Error::bad_request(format!("unknown value \"{text}\" for {name}")))
        }
        v => {
            let n = int_value(v, name)
                .and_then(|n| i32::try_from(n).map_err(|_| bad(format!("{name} out of range"))))?;
            if (kind.known)(n) {
                Ok(n)
            } else {
                Err(Error::bad_request(format!("unknown value {n} for {name}")))
            }
        }
    }
}

/// An optional boolean (nil is false).
pub fn flag(t: &impl Get, name: &str) -> Result<bool> {
    match t.get(name)? {
        LuaValue::Nil => Ok(false),
        LuaValue::Boolean(b) => Ok(b),
        _ => Err(bad(format!("{name} must be boolean"))),
    }
}

/// Optional bytes (nil is empty).
pub fn bytes(t: &impl Get, name: &str) -> Result<Vec<u8>> {
    match t.get(name)? {
        LuaValue::Nil => Ok(Vec::new()),
        LuaValue::String(s) => Ok(s.as_bytes().to_vec()),
        _ => Err(bad(format!("{name} must be string"))),
    }
}

/// The request named `op` built from `args`. Input the gateway itself
/// would refuse (bad base64, unknown enum names) becomes an operation that
/// answers with the gateway's 400, so callers get the same `res`.
pub fn op(lua: &Lua, name: &str, args: Option<&Table>) -> Result<Op> {
    match parse_op(lua, name, args) {
        Err(Error::Status { status, .. }) => Ok(Op::Refuse(status.message().to_string())),
        other => other,
    }
}

/// The fields of a `range`, a `put`, a `delete`.
const RANGE: &[&str] = &[
    "key",
    "range_end",
    "limit",
    "revision",
    "sort_order",
    "sort_target",
    "serializable",
    "keys_only",
    "count_only",
];
const PUT: &[&str] = &[
    "key",
    "value",
    "lease",
    "prev_kv",
    "ignore_value",
    "ignore_lease",
];
const DELETE: &[&str] = &["key", "range_end", "prev_kv"];

fn parse_op(lua: &Lua, name: &str, args: Option<&Table>) -> Result<Op> {
    match (name, args) {
        ("range", Some(t)) => range(&Fields::read(lua, t, RANGE)?),
        ("put", Some(t)) => put(&Fields::read(lua, t, PUT)?),
        ("delete", Some(t)) => delete(&Fields::read(lua, t, DELETE)?),
        ("txn", Some(a)) => Ok(Op::Txn(super::txn::txn(a)?)),
        ("version", _) => Ok(Op::Version),
        ("grant", Some(a)) => Ok(Op::LeaseGrant(PbLeaseGrantRequest {
            ttl: int(a, "ttl")?,
            id: lease_id(a)?,
        })),
        ("revoke", Some(a)) => Ok(Op::LeaseRevoke(lease_id(a)?)),
        ("keepalive", Some(a)) => Ok(Op::LeaseKeepAlive(lease_id(a)?)),
        ("timetolive", Some(a)) => Ok(Op::LeaseTimeToLive(PbLeaseTimeToLiveRequest {
            id: lease_id(a)?,
            keys: flag(a, "keys")?,
        })),
        ("leases", _) => Ok(Op::LeaseLeases),
        #[cfg(feature = "test-hooks")]
        ("panic", _) => Ok(Op::Panic),
        #[cfg(feature = "test-hooks")]
        ("noop", _) => Ok(Op::Noop),
        #[cfg(feature = "test-hooks")]
        ("stall", Some(a)) => Ok(Op::Stall(int(a, "ms")?.max(0) as u64)),
        _ => Err(bad(format!("unknown operation: {name}"))),
    }
}

fn range(a: &Fields) -> Result<Op> {
    Ok(Op::Range(PbRangeRequest {
        key: bytes(a, "key")?,
        range_end: bytes(a, "range_end")?,
        limit: int(a, "limit")?,
        revision: int(a, "revision")?,
        sort_order: enum_value(&a.get("sort_order")?, "sort_order", &SORT_ORDER)?,
        sort_target: enum_value(&a.get("sort_target")?, "sort_target", &SORT_TARGET)?,
        serializable: flag(a, "serializable")?,
        keys_only: flag(a, "keys_only")?,
        count_only: flag(a, "count_only")?,
        ..Default::default()
    }))
}

fn put(a: &Fields) -> Result<Op> {
    Ok(Op::Put(PbPutRequest {
        key: bytes(a, "key")?,
        value: bytes(a, "value")?,
        lease: int(a, "lease")?,
        prev_kv: flag(a, "prev_kv")?,
        ignore_value: flag(a, "ignore_value")?,
        ignore_lease: flag(a, "ignore_lease")?,
    }))
}

fn delete(a: &Fields) -> Result<Op> {
    Ok(Op::DeleteRange(PbDeleteRangeRequest {
        key: bytes(a, "key")?,
        range_end: bytes(a, "range_end")?,
        prev_kv: flag(a, "prev_kv")?,
    }))
}

/// A lease ID from field `id`: a number, or a decimal string (IDs exceed
/// 2^53, so a string is how one round-trips without loss); nil is 0.
pub fn lease_id(t: &Table) -> Result<i64> {
    let v: LuaValue = t.raw_get("id").map_err(|e| bad(e.to_string()))?;
    match v {
        LuaValue::Nil => Ok(0),
        LuaValue::String(s) => crate::lease::parse_id(&s.to_string_lossy()),
        v => int_value(&v, "ID"),
    }
}

/// A watcher's create request from `{key, range_end, start_revision,
/// progress_notify, filters, prev_kv, watch_id, fragment, buffer}`.
pub fn watch(a: &Table) -> Result<crate::watch::Spec> {
    let mut filters = Vec::new();
    if let LuaValue::Table(list) = a.raw_get("filters").map_err(|e| bad(e.to_string()))? {
        for v in list.sequence_values::<LuaValue>() {
            let v = v.map_err(|e| bad(e.to_string()))?;
            filters.push(enum_value(&v, "filters", &FILTER)?);
        }
    }
    let buffer = watch_buffer(a)?;
    Ok(crate::watch::Spec {
        member: 0,
        create: PbWatchCreateRequest {
            key: bytes(a, "key")?,
            range_end: bytes(a, "range_end")?,
            start_revision: int(a, "start_revision")?,
            progress_notify: flag(a, "progress_notify")?,
            filters,
            prev_kv: flag(a, "prev_kv")?,
            watch_id: int(a, "watch_id")?,
            fragment: flag(a, "fragment")?,
        },
        buffer,
    })
}

/// A mirror's `{key, range_end}` (the façade computes the range end).
pub fn mirror(a: &Table) -> Result<(Vec<u8>, Vec<u8>)> {
    Ok((bytes(a, "key")?, bytes(a, "range_end")?))
}

/// `buffer`: absent means the default; else an integer in
/// `1..=MAX_BUFFER` (a bound on what one slow reader may hold).
fn watch_buffer(a: &Table) -> Result<usize> {
    use crate::watch::{DEFAULT_BUFFER, MAX_BUFFER};
    let v: LuaValue = a.raw_get("buffer").map_err(|e| bad(e.to_string()))?;
    if v.is_nil() {
        return Ok(DEFAULT_BUFFER);
    }
    let refused = || bad(format!("buffer must be an integer in 1..{MAX_BUFFER}"));
    let n = int_value(&v, "buffer").map_err(|_| refused())?;
    match usize::try_from(n) {
        Ok(n) if (1..=MAX_BUFFER).contains(&n) => Ok(n),
        _ => Err(refused()),
    }
}

/// The connection config from the façade's `{endpoints = {...}, first = n,
/// max_recv = n}` table.
pub fn config(t: &Table) -> Result<Config> {
    let list: Table = t
        .raw_get("endpoints")
        .map_err(|_| bad("endpoints must be an array of strings".into()))?;
    let mut endpoints = Vec::new();
    for ep in list.sequence_values::<String>() {
        endpoints.push(ep.map_err(|_| bad("endpoints must be an array of strings".into()))?);
    }
    let first = int(t, "first")?;
    let max_recv = int(t, "max_recv")?;
    let config = Config {
        endpoints,
        first: first.unsigned_abs() as usize,
        max_recv: if max_recv <= 0 {
            UNLIMITED
        } else {
            max_recv as usize
        },
        tls: Tls::load(&tls_sources(t)?)?,
        credentials: credentials(t)?,
    };
    config.validate()?;
    Ok(config)
}

/// An optional string option (`opts.<name> must be string` otherwise).
fn opt_string(t: &Table, name: &str) -> Result<Option<String>> {
    match t.raw_get(name).map_err(|e| bad(e.to_string()))? {
        LuaValue::Nil => Ok(None),
        LuaValue::String(s) => s
            .to_str()
            .map(|s| Some(s.to_string()))
            .map_err(|_| bad(format!("opts.{name} must be string"))),
        _ => Err(bad(format!("opts.{name} must be string"))),
    }
}

/// An optional byte-string option (PEM contents).
fn opt_bytes(t: &Table, name: &str) -> Result<Option<Vec<u8>>> {
    match t.raw_get(name).map_err(|e| bad(e.to_string()))? {
        LuaValue::Nil => Ok(None),
        LuaValue::String(s) => Ok(Some(s.as_bytes().to_vec())),
        _ => Err(bad(format!("opts.{name} must be string"))),
    }
}

/// The TLS options: `ssl_verify`, `sni`, `trusted_ca`, `ssl_cert_path`,
/// `ssl_key_path`, `ssl_cert`, `ssl_key`.
fn tls_sources(t: &Table) -> Result<TlsSources> {
    let verify = match t.raw_get("ssl_verify").map_err(|e| bad(e.to_string()))? {
        LuaValue::Nil => None,
        LuaValue::Boolean(b) => Some(b),
        _ => return Err(bad("opts.ssl_verify must be boolean".into())),
    };
    Ok(TlsSources {
        verify,
        sni: opt_string(t, "sni")?,
        trusted_ca: opt_string(t, "trusted_ca")?,
        cert_path: opt_string(t, "ssl_cert_path")?,
        key_path: opt_string(t, "ssl_key_path")?,
        cert: opt_bytes(t, "ssl_cert")?,
        key: opt_bytes(t, "ssl_key")?,
    })
}

/// `user` and `password`: auth is on only when both are set, as in
/// lua-resty-etcd (the façade has checked their types).
fn credentials(t: &Table) -> Result<Option<Credentials>> {
    match (opt_string(t, "user")?, opt_bytes(t, "password")?) {
        (Some(user), Some(pw)) => Ok(Some(Credentials {
            user,
            password: Secret(pw.into()),
        })),
        _ => Ok(None),
    }
}

/// The metadata of a client config's `extra_headers` (a table of header
/// name to string or number; absent means none).
pub fn metadata(t: &Table) -> Result<Metadata> {
    let headers = match t.raw_get("extra_headers").map_err(|e| bad(e.to_string()))? {
        LuaValue::Nil => return Ok(Metadata::default()),
        LuaValue::Table(h) => h,
        _ => return Err(bad("opts.extra_headers must be table or ignore".into())),
    };
    let mut pairs = Vec::new();
    for pair in headers.pairs::<LuaValue, LuaValue>() {
        let (k, v) = pair.map_err(|e| bad(e.to_string()))?;
        let text = |v: &LuaValue| match v {
            LuaValue::String(s) => s.to_str().ok().map(|s| s.to_string()),
            LuaValue::Integer(n) => Some(n.to_string()),
            LuaValue::Number(n) => Some(n.to_string()),
            _ => None,
        };
        let name = text(&k)
            .ok_or_else(|| bad("opts.extra_headers: header names must be strings".into()))?;
        let value = text(&v).ok_or_else(|| {
            bad(format!(
                "opts.extra_headers: value of {name} must be string"
            ))
        })?;
        pairs.push((name, value));
    }
    Metadata::from_headers(pairs)
}

/// A call timeout in seconds: positive and finite.
pub fn timeout(secs: f64) -> Result<std::time::Duration> {
    if secs.is_finite() && secs > 0.0 && secs < 1e9 {
        Ok(std::time::Duration::from_secs_f64(secs))
    } else {
        Err(bad(format!("invalid timeout: {secs}")))
    }
}
