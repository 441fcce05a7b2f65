//! Rust values to Lua values: gateway-shaped bodies and HTTP-like replies.

use mlua::{Lua, Result as LuaResult, Table, Value as LuaValue};

use crate::shape::{Reply, Value};

/// A shaped value as the Lua table cjson would have decoded from the
/// gateway's JSON.
pub fn value(lua: &Lua, v: &Value) -> LuaResult<LuaValue> {
    Ok(match v {
        Value::Bool(b) => LuaValue::Boolean(*b),
        Value::Int(n) => LuaValue::Number(*n as f64),
        Value::Str(s) => LuaValue::String(lua.create_string(s)?),
        Value::List(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, value(lua, item)?)?;
            }
            LuaValue::Table(t)
        }
        Value::Map(members) => {
            let t = lua.create_table_with_capacity(0, members.len())?;
            for (k, item) in members {
                t.raw_set(*k, value(lua, item)?)?;
            }
            LuaValue::Table(t)
        }
    })
}

/// A reply as lua-resty-http's response object shape: `status`, `reason`,
/// `headers` (with `X-Etcd-Index` from `header.revision`) and `body`.
pub fn reply(lua: &Lua, r: &Reply) -> LuaResult<Table> {
    let res = lua.create_table_with_capacity(0, 5)?;
    res.raw_set("status", r.status)?;
    res.raw_set("reason", reason(r.status))?;
    let headers = lua.create_table_with_capacity(0, 2)?;
    headers.raw_set("Content-Type", "application/json")?;
    if let Some(rev) = r.revision {
        headers.raw_set("X-Etcd-Index", rev.to_string())?;
    }
    res.raw_set("headers", headers)?;
    res.raw_set("has_body", true)?;
    res.raw_set("body", value(lua, &r.body)?)?;
    Ok(res)
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
