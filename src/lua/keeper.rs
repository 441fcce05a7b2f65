//! The lease keeper handle: `state`, `cancel` and `wait` (through the same
//! submit/call paths as every operation, so the Lua bridge waits on it
//! like on any call). Collecting the handle cancels the keeper.

use std::sync::Arc;

use mlua::{IntoLuaMulti, Table, UserData, UserDataMethods};

use super::{add_job_methods, args, Job, Jobs};
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::lease::keeper::Keeper;
use crate::metadata::Metadata;
use crate::ops::{self, Op};

/// A keeper held by Lua.
pub struct KeeperHandle {
    pub(super) keeper: Arc<Keeper>,
    pub(super) conn: Arc<Connection>,
}

impl Jobs for KeeperHandle {
    const NOT_IN_INIT: &'static str = "lease keepers are not available in the init phase";

    /// `wait` with `{timeout = seconds}`. Sends nothing to etcd: no
    /// metadata.
    fn job(&self, op: &str, a: Option<&Table>) -> Result<Job> {
        if op != "wait" {
            return Err(Error::Internal(format!("unknown keeper operation: {op}")));
        }
        let secs: f64 = a
            .and_then(|t| t.raw_get::<f64>("timeout").ok())
            .unwrap_or(0.0);
        let wait = args::timeout(secs)?;
        Ok(Box::pin(ops::execute(
            self.conn.clone(),
            Metadata::default(),
            Op::KeeperWait(self.keeper.clone(), wait),
        )))
    }
}

impl UserData for KeeperHandle {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        add_job_methods(methods);
        methods.add_method("state", |_, this, ()| Ok(this.keeper.state().as_str()));
        methods.add_method("lease", |_, this, ()| Ok(this.keeper.lease().to_string()));
        methods.add_method("cancel", |lua, this, ()| {
            this.keeper.cancel();
            true.into_lua_multi(lua)
        });
    }
}
