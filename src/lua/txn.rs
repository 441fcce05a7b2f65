//! lua-resty-etcd's txn tables to a `TxnRequest`.
//!
//! The gateway's JSON decoder accepts a field under its proto name or its
//! lowerCamel name, int64 as number or string, and enums by name or number;
//! bytes are base64. lua-resty-etcd rewrites only the top-level compares and
//! the `requestPut`s of `success` (prefixing and serializing them); callers
//! base64-encode everything else themselves. The façade marks the entries it
//! rewrote with `raw = true` (their bytes are plain); every other byte field
//! is decoded from base64 here, as the gateway would.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine as _};
use mlua::{Table, Value as LuaValue};

use crate::error::{Error, Result};
use crate::pb::etcdserverpb::{self as pb, compare::TargetUnion, request_op::Request};

use super::args;

const STD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The value of `t[snake]`, else `t[camel]`.
pub fn field(t: &Table, snake: &str, camel: &str) -> Result<LuaValue> {
    let v: LuaValue = t.raw_get(snake).map_err(|e| args::bad(e.to_string()))?;
    if !v.is_nil() || snake == camel {
        return Ok(v);
    }
    t.raw_get(camel).map_err(|e| args::bad(e.to_string()))
}

/// Bytes from a field: as given when `raw`, else decoded from base64 with
/// the gateway's error text for bad input.
fn bytes(t: &Table, snake: &str, camel: &str, raw: bool) -> Result<Vec<u8>> {
    match field(t, snake, camel)? {
        LuaValue::Nil => Ok(Vec::new()),
        LuaValue::String(s) if raw => Ok(s.as_bytes().to_vec()),
        LuaValue::String(s) => decode_b64(&s.as_bytes()),
        _ => Err(args::bad(format!("{snake} must be string"))),
    }
}

/// Base64 as the gateway's decoder takes it (standard or URL alphabet,
/// padding optional).
pub fn decode_b64(s: &[u8]) -> Result<Vec<u8>> {
    STD.decode(s).or_else(|_| URL.decode(s)).map_err(|e| {
        let at = match e {
            base64::DecodeError::InvalidByte(at, _) => at,
            base64::DecodeError::InvalidLastSymbol(at, _) => at,
            _ => s.len(),
        };
        Error::bad_request(format!("illegal base64 data at input byte {at}"))
    })
}

fn int(t: &Table, snake: &str, camel: &str) -> Result<Option<i64>> {
    match field(t, snake, camel)? {
        LuaValue::Nil => Ok(None),
        v => args::int_value(&v, snake).map(Some),
    }
}

fn flag(t: &Table, snake: &str, camel: &str) -> Result<bool> {
    match field(t, snake, camel)? {
        LuaValue::Nil => Ok(false),
        LuaValue::Boolean(b) => Ok(b),
        _ => Err(args::bad(format!("{snake} must be boolean"))),
    }
}

fn is_raw(t: &Table) -> bool {
    matches!(t.raw_get::<LuaValue>("raw"), Ok(LuaValue::Boolean(true)))
}

fn list(t: &Table, snake: &str, camel: &str) -> Result<Vec<Table>> {
    match field(t, snake, camel)? {
        LuaValue::Nil => Ok(Vec::new()),
        LuaValue::Table(items) => items
            .sequence_values::<Table>()
            .map(|r| r.map_err(|_| args::bad(format!("{snake} must be an array of tables"))))
            .collect(),
        _ => Err(args::bad(format!("{snake} must be an array"))),
    }
}

/// How deeply `request_txn`s may nest. etcd itself has no such limit, but
/// a table that contains itself must end in an error, not in a stack
/// overflow; real transactions nest once or twice.
pub const MAX_DEPTH: usize = 16;

/// A whole transaction.
pub fn txn(t: &Table) -> Result<pb::TxnRequest> {
    txn_at(t, 1)
}

fn txn_at(t: &Table, depth: usize) -> Result<pb::TxnRequest> {
    if depth > MAX_DEPTH {
        return Err(args::bad(format!(
            "request_txn nested deeper than {MAX_DEPTH} levels"
        )));
    }
    let ops = |name| -> Result<Vec<pb::RequestOp>> {
        list(t, name, name)?
            .iter()
            .map(|op| request_op(op, depth))
            .collect()
    };
    Ok(pb::TxnRequest {
        compare: list(t, "compare", "compare")?
            .iter()
            .map(compare)
            .collect::<Result<_>>()?,
        success: ops("success")?,
        failure: ops("failure")?,
    })
}

fn compare(c: &Table) -> Result<pb::Compare> {
    let raw = is_raw(c);
    let target = args::enum_value(&field(c, "target", "target")?, "target", &COMPARE_TARGET)?;
    let result = args::enum_value(&field(c, "result", "result")?, "result", &COMPARE_RESULT)?;
    // Like the gateway's decoder: the union member is whichever the table
    // holds; none means etcd compares against the zero value.
    let target_union = if let Some(v) = int(c, "version", "version")? {
        Some(TargetUnion::Version(v))
    } else if let Some(v) = int(c, "create_revision", "createRevision")? {
        Some(TargetUnion::CreateRevision(v))
    } else if let Some(v) = int(c, "mod_revision", "modRevision")? {
        Some(TargetUnion::ModRevision(v))
    } else if !field(c, "value", "value")?.is_nil() {
        Some(TargetUnion::Value(bytes(c, "value", "value", raw)?))
    } else {
        int(c, "lease", "lease")?.map(TargetUnion::Lease)
    };
    Ok(pb::Compare {
        result,
        target,
        key: bytes(c, "key", "key", raw)?,
        // lua-resty-etcd never rewrites range_end: it is the caller's base64.
        range_end: bytes(c, "range_end", "rangeEnd", false)?,
        target_union,
    })
}

fn request_op(op: &Table, depth: usize) -> Result<pb::RequestOp> {
    let raw = is_raw(op);
    let sub = |snake: &str, camel: &str| -> Result<Option<Table>> {
        match field(op, snake, camel)? {
            LuaValue::Nil => Ok(None),
            LuaValue::Table(t) => Ok(Some(t)),
            _ => Err(args::bad(format!("{snake} must be a table"))),
        }
    };
    let request = if let Some(p) = sub("request_put", "requestPut")? {
        Some(Request::RequestPut(pb::PutRequest {
            key: bytes(&p, "key", "key", raw)?,
            value: bytes(&p, "value", "value", raw)?,
            lease: int(&p, "lease", "lease")?.unwrap_or(0),
            prev_kv: flag(&p, "prev_kv", "prevKv")?,
            ignore_value: flag(&p, "ignore_value", "ignoreValue")?,
            ignore_lease: flag(&p, "ignore_lease", "ignoreLease")?,
        }))
    } else if let Some(r) = sub("request_range", "requestRange")? {
        Some(Request::RequestRange(range(&r)?))
    } else if let Some(d) = sub("request_delete_range", "requestDeleteRange")? {
        Some(Request::RequestDeleteRange(pb::DeleteRangeRequest {
            key: bytes(&d, "key", "key", false)?,
            range_end: bytes(&d, "range_end", "rangeEnd", false)?,
            prev_kv: flag(&d, "prev_kv", "prevKv")?,
        }))
    } else if let Some(t) = sub("request_txn", "requestTxn")? {
        Some(Request::RequestTxn(txn_at(&t, depth + 1)?))
    } else {
        None
    };
    Ok(pb::RequestOp { request })
}

fn range(r: &Table) -> Result<pb::RangeRequest> {
    let opt = |snake, camel| int(r, snake, camel).map(|v| v.unwrap_or(0));
    Ok(pb::RangeRequest {
        key: bytes(r, "key", "key", false)?,
        range_end: bytes(r, "range_end", "rangeEnd", false)?,
        limit: opt("limit", "limit")?,
        revision: opt("revision", "revision")?,
        sort_order: args::enum_value(
            &field(r, "sort_order", "sortOrder")?,
            "sort_order",
            &args::SORT_ORDER,
        )?,
        sort_target: args::enum_value(
            &field(r, "sort_target", "sortTarget")?,
            "sort_target",
            &args::SORT_TARGET,
        )?,
        serializable: flag(r, "serializable", "serializable")?,
        keys_only: flag(r, "keys_only", "keysOnly")?,
        count_only: flag(r, "count_only", "countOnly")?,
        min_mod_revision: opt("min_mod_revision", "minModRevision")?,
        max_mod_revision: opt("max_mod_revision", "maxModRevision")?,
        min_create_revision: opt("min_create_revision", "minCreateRevision")?,
        max_create_revision: opt("max_create_revision", "maxCreateRevision")?,
    })
}

const COMPARE_TARGET: args::EnumKind = args::EnumKind {
    by_name: |n| pb::compare::CompareTarget::from_str_name(n).map(|v| v as i32),
    known: |n| pb::compare::CompareTarget::try_from(n).is_ok(),
};

const COMPARE_RESULT: args::EnumKind = args::EnumKind {
    by_name: |n| pb::compare::CompareResult::from_str_name(n).map(|v| v as i32),
    known: |n| pb::compare::CompareResult::try_from(n).is_ok(),
};
