//! The mirror feed handle: `next` (the applier's pull, through the same
//! submit/call paths as every operation), `figures` and `close`.
//! Collecting the handle ends the feed and cancels its watcher.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use mlua::{IntoLuaMulti, Table, UserData, UserDataMethods};

use super::{add_job_methods, Job, Jobs};
use crate::error::{Error, Result};
use crate::mirror::Feed;
use crate::shape::{self, Reply};

/// A feed held by Lua (by the façade's mirror object).
pub struct MirrorHandle {
    pub(super) feed: Arc<Feed>,
}

impl Jobs for MirrorHandle {
    const NOT_IN_INIT: &'static str = "mirrors are not available in the init phase";

    /// `next`: the next delta (see [`shape::mirror::delta`]).
    fn job(&self, op: &str, _a: Option<&Table>) -> Result<Job> {
        if op != "next" {
            return Err(Error::Internal(format!("unknown mirror operation: {op}")));
        }
        let feed = self.feed.clone();
        Ok(Box::pin(async move {
            let d = feed.next().await?;
            Ok(Reply::ok(shape::mirror::delta(&d), None))
        }))
    }
}

impl Drop for MirrorHandle {
    fn drop(&mut self) {
        self.feed.close();
    }
}

impl UserData for MirrorHandle {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        add_job_methods(methods);
        methods.add_method("figures", |lua, this, ()| {
            let f = this.feed.figures();
            let t = lua.create_table()?;
            t.raw_set("resyncs", f.resyncs.load(Ordering::Relaxed))?;
            t.raw_set("events", f.events.load(Ordering::Relaxed))?;
            if let Some(e) = f.last_error() {
                t.raw_set("last_error", e)?;
            }
            Ok(t)
        });
        methods.add_method("close", |lua, this, ()| {
            this.feed.close();
            true.into_lua_multi(lua)
        });
    }
}
