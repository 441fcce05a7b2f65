//! The binding layer: the only code that knows Lua. It turns Lua arguments
//! into requests, results into Lua values, and every `Result` into either a
//! value or `nil, err`. Operational failures are never raised as Lua errors.

mod args;
mod convert;
mod keeper;
mod mirror;
mod strings;
mod txn;

use std::cell::RefCell;
use std::sync::Arc;

use mlua::{IntoLuaMulti, Lua, MultiValue, Result as LuaResult, Table, UserData, UserDataMethods};

use crate::connection::{Config, Connection};
use crate::error::{Error, Result};
use crate::metadata::Metadata;
use crate::ops::{self, Op};
use crate::shape::Reply;
use crate::worker;

/// `value`, or `nil, err`, or `nil, err, true` when the caller misused the
/// API (a wrong argument): the façade raises those with `error(err, 2)`
/// at the caller's line, and returns every other failure.
fn ret<T: mlua::IntoLua>(lua: &Lua, r: Result<T>) -> LuaResult<MultiValue> {
    match r {
        Ok(v) => v.into_lua_multi(lua),
        Err(e @ Error::InvalidArgument(_)) => (mlua::Nil, e.to_string(), true).into_lua_multi(lua),
        Err(e) => (mlua::Nil, e.to_string()).into_lua_multi(lua),
    }
}

/// A reply as a Lua table; the only way this fails is Lua running out of
/// memory, which is the library's failure, not the caller's.
fn reply_table(lua: &Lua, reply: &crate::shape::Reply) -> Result<Table> {
    convert::reply(lua, reply).map_err(|_| Error::Internal("failed to build the reply".into()))
}

/// A client's connection settings, plus the worker connection it resolved
/// to in this process (re-resolved after fork).
struct Client {
    config: Config,
    /// Sent with every call and on this client's watch streams.
    meta: Metadata,
    cached: RefCell<Option<(usize, Arc<Connection>)>>,
}

impl Client {
    fn connection(&self, w: &'static worker::Worker) -> Result<Arc<Connection>> {
        let id = w as *const worker::Worker as usize;
        if let Some((owner, conn)) = self.cached.borrow().as_ref() {
            if *owner == id {
                return Ok(conn.clone());
            }
        }
        let conn = w.connection(&self.config)?;
        *self.cached.borrow_mut() = Some((id, conn.clone()));
        Ok(conn)
    }

    /// Starts an operation; returns its id for `drain`.
    fn submit(&self, lua: &Lua, op: &str, a: Option<Table>, timeout: f64) -> Result<u64> {
        let op = args::op(lua, op, a.as_ref())?;
        let timeout = args::timeout(timeout)?;
        let w = worker::current()?;
        let job = ops::execute(self.connection(w)?, self.meta.clone(), op);
        w.submit(timeout, job)
    }

    /// Runs an operation, blocking until it ends (non-yieldable phases).
    fn call(&self, lua: &Lua, op: &str, a: Option<Table>, timeout: f64) -> Result<Table> {
        let op = args::op(lua, op, a.as_ref())?;
        let timeout = args::timeout(timeout)?;
        let w = worker::current()?;
        let job = ops::execute(self.connection(w)?, self.meta.clone(), op);
        let reply = w.call_blocking(timeout, job)?;
        reply_table(lua, &reply)
    }

    /// Runs an operation on a throwaway runtime (nginx's `init` phase).
    fn call_once(&self, lua: &Lua, op: &str, a: Option<Table>, timeout: f64) -> Result<Table> {
        let op = args::op(lua, op, a.as_ref())?;
        let timeout = args::timeout(timeout)?;
        let reply = worker::call_once(self.config.clone(), self.meta.clone(), op, timeout)?;
        reply_table(lua, &reply)
    }
}

/// A watcher handle: `read` goes through the same submit/call paths as
/// every operation, so the Lua bridge waits on it like on any call.
struct WatcherHandle {
    watcher: Arc<crate::watch::Watcher>,
    conn: Arc<Connection>,
    canceled: std::cell::Cell<bool>,
}

/// A job a handle runs through the bridge.
type Job = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Reply>> + Send>>;

/// A long-lived native object whose operations run through the same
/// submit/call paths as a client's (so the Lua bridge waits on them).
trait Jobs: Sized + 'static {
    /// Why the object does not work in the init phase.
    const NOT_IN_INIT: &'static str;
    /// The job behind `op` with arguments `a`.
    fn job(&self, op: &str, a: Option<&Table>) -> Result<Job>;
}

/// Adds `submit`, `call` and `call_once` for a [`Jobs`] handle.
fn add_job_methods<T: Jobs, M: UserDataMethods<T>>(methods: &mut M) {
    methods.add_method(
        "submit",
        |lua, this, (op, a, timeout): (String, Option<Table>, f64)| {
            let id = this.job(&op, a.as_ref()).and_then(|job| {
                let timeout = args::timeout(timeout)?;
                worker::current()?.submit_read(timeout, job)
            });
            ret(lua, id)
        },
    );
    methods.add_method(
        "call",
        |lua, this, (op, a, timeout): (String, Option<Table>, f64)| {
            let reply = this.job(&op, a.as_ref()).and_then(|job| {
                let timeout = args::timeout(timeout)?;
                worker::current()?.call_blocking(timeout, job)
            });
            ret(lua, reply.and_then(|r| reply_table(lua, &r)))
        },
    );
    methods.add_method("call_once", |lua, _this, _: mlua::MultiValue| {
        ret::<bool>(lua, Err(Error::InvalidArgument(T::NOT_IN_INIT.into())))
    });
}

impl Jobs for WatcherHandle {
    const NOT_IN_INIT: &'static str = "watch is not available in the init phase";

    /// `read`. Reads send nothing to etcd: no metadata.
    fn job(&self, op: &str, _a: Option<&Table>) -> Result<Job> {
        match op {
            "read" => Ok(Box::pin(ops::execute(
                self.conn.clone(),
                Metadata::default(),
                Op::WatchRead(self.watcher.clone()),
            ))),
            _ => Err(Error::Internal(format!("unknown watcher operation: {op}"))),
        }
    }
}

impl UserData for WatcherHandle {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        add_job_methods(methods);
        // A response the watcher has already buffered, shaped as `read`
        // answers it, or nil when none is (or while a submitted read holds
        // the queue): a reader that falls behind takes it here, on the
        // nginx thread, without the round trip of a submitted read (a
        // queued job, a completion, a doorbell and a semaphore per
        // message). `nil, err` when the reply could not be built: the
        // message is gone then, and the caller must end the watch.
        methods.add_method("try_read", |lua, this, ()| match this.watcher.try_next() {
            Some(r) => {
                let reply = crate::shape::watch::read_reply(&r, this.watcher.watch_id());
                ret(lua, reply_table(lua, &reply))
            }
            None => mlua::Nil.into_lua_multi(lua),
        });
        // `1`, or `nil, "closed"` when already canceled (lua-resty-etcd's
        // watchcancel answers).
        methods.add_method("cancel", |lua, this, ()| {
            if this.canceled.replace(true) {
                return (mlua::Nil, "closed").into_lua_multi(lua);
            }
            this.watcher.cancel();
            1.into_lua_multi(lua)
        });
    }
}

impl UserData for Client {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method(
            "submit",
            |lua, this, (op, a, timeout): (String, Option<Table>, f64)| {
                ret(lua, this.submit(lua, &op, a, timeout))
            },
        );
        methods.add_method(
            "call",
            |lua, this, (op, a, timeout): (String, Option<Table>, f64)| {
                ret(lua, this.call(lua, &op, a, timeout))
            },
        );
        methods.add_method("watcher", |lua, this, a: Table| {
            let made = args::watch(&a).and_then(|spec| {
                let w = worker::current()?;
                let conn = this.connection(w)?;
                let watcher = Arc::new(w.watch(&conn, &this.meta, spec));
                Ok(WatcherHandle {
                    watcher,
                    conn,
                    canceled: std::cell::Cell::new(false),
                })
            });
            match made {
                Ok(h) => lua.create_userdata(h)?.into_lua_multi(lua),
                Err(e) => ret::<bool>(lua, Err(e)),
            }
        });
        methods.add_method(
            "call_once",
            |lua, this, (op, a, timeout): (String, Option<Table>, f64)| {
                ret(lua, this.call_once(lua, &op, a, timeout))
            },
        );
        // `native:health(unhealthy, fail_timeout)`: takes health_check's
        // view (`unhealthy[i]` true for member i; fail_timeout 0 when
        // disabled) and returns the 1-based members this worker found
        // failing since the last call, or nil.
        methods.add_method(
            "health",
            |lua, this, (view, fail_timeout): (Option<Table>, f64)| {
                let conn = match worker::current().and_then(|w| this.connection(w)) {
                    Ok(c) => c,
                    Err(e) => return ret::<bool>(lua, Err(e)),
                };
                let n = this.config.endpoints.len();
                let mut unhealthy = vec![false; n];
                if let Some(view) = view {
                    for (i, u) in unhealthy.iter_mut().enumerate() {
                        *u = view.raw_get::<Option<bool>>(i + 1)?.unwrap_or(false);
                    }
                }
                let secs = if fail_timeout.is_finite() {
                    fail_timeout.clamp(0.0, 1e9)
                } else {
                    0.0
                };
                let h = conn.health();
                h.set_view(&unhealthy, std::time::Duration::from_secs_f64(secs));
                let reports = h.take_reports();
                if reports.is_empty() {
                    return mlua::Nil.into_lua_multi(lua);
                }
                let t = lua.create_sequence_from(reports.into_iter().map(|i| i + 1))?;
                t.into_lua_multi(lua)
            },
        );
        // A mirror's feed: nothing is sent until its first `next`.
        methods.add_method("mirror", |lua, this, a: Table| {
            let made = args::mirror(&a).and_then(|(key, range_end)| {
                let w = worker::current()?;
                let conn = this.connection(w)?;
                let hub = w.watch_hub(&conn, &this.meta);
                let feed = crate::mirror::Feed::new(conn, this.meta.clone(), hub, key, range_end);
                Ok(mirror::MirrorHandle {
                    feed: Arc::new(feed),
                })
            });
            match made {
                Ok(h) => lua.create_userdata(h)?.into_lua_multi(lua),
                Err(e) => ret::<bool>(lua, Err(e)),
            }
        });
        // Starts at once, in any phase: no round trip to etcd here.
        methods.add_method("keeper", |lua, this, a: Table| {
            let made = args::lease_id(&a).and_then(|id| {
                let w = worker::current()?;
                let conn = this.connection(w)?;
                let keeper = Arc::new(w.keep_lease(&conn, &this.meta, id));
                Ok(keeper::KeeperHandle { keeper, conn })
            });
            match made {
                Ok(h) => lua.create_userdata(h)?.into_lua_multi(lua),
                Err(e) => (mlua::Nil, e.to_string()).into_lua_multi(lua),
            }
        });
    }
}

/// `core.client(cfg)`: a client handle, or `nil, err` for a bad config.
fn client(lua: &Lua, cfg: Table) -> LuaResult<MultiValue> {
    let made = args::config(&cfg).and_then(|config| {
        Ok(Client {
            config,
            meta: args::metadata(&cfg)?,
            cached: RefCell::new(None),
        })
    });
    match made {
        Ok(c) => lua.create_userdata(c)?.into_lua_multi(lua),
        Err(e) => (mlua::Nil, e.to_string()).into_lua_multi(lua),
    }
}

/// `core.drain(t)`: fills `t` with `id, res|false, err|false` triplets for
/// every finished call and returns how many there were, and the queued
/// notices (or nil): the dispatcher logs them, so a call does not ask for
/// them itself. Reusing one table keeps an empty drain allocation-free.
fn drain(lua: &Lua, t: Table) -> LuaResult<(usize, Option<Table>)> {
    let mut done: Vec<convert::Outcome> = Vec::new();
    if let Some(w) = worker::existing() {
        w.drain(|id, out| done.push((id, out)));
    }
    // Taken after the drain: a call's notice is queued before its result,
    // so it is logged before its waiter wakes.
    let notices = notices(lua)?;
    if done.is_empty() {
        return Ok((0, notices));
    }
    Ok((convert::outcomes(lua, &t, &done)?, notices))
}

/// The queued notices as a sequence, or nil when there are none (one
/// atomic load).
fn notices(lua: &Lua) -> LuaResult<Option<Table>> {
    let list = crate::notice::take();
    if list.is_empty() {
        return Ok(None);
    }
    lua.create_sequence_from(list).map(Some)
}

/// `core.doorbell()`: path of a fresh wake-up socket for the dispatcher.
fn doorbell(lua: &Lua, _: ()) -> LuaResult<MultiValue> {
    let path = worker::current().and_then(|w| w.doorbell());
    ret(lua, path.map(|p| p.to_string_lossy().into_owned()))
}

/// `core.stats()`: figures about this worker, or `nil` before first use.
fn stats(lua: &Lua, _: ()) -> LuaResult<Option<Table>> {
    let Some(w) = worker::existing() else {
        return Ok(None);
    };
    let s = w.stats();
    let t = lua.create_table()?;
    t.raw_set("pid", s.pid)?;
    t.raw_set("runtimes_created", s.runtimes_created)?;
    t.raw_set("in_flight", s.in_flight)?;
    t.raw_set("calls", s.calls)?;
    t.raw_set("connections", s.connections)?;
    t.raw_set("watchers", s.watchers)?;
    t.raw_set("watch_streams", s.watch_streams)?;
    t.raw_set("lease_keepers", s.lease_keepers)?;
    t.raw_set("lease_streams", s.lease_streams)?;
    t.raw_set("lease_renewals", s.lease_renewals)?;
    t.raw_set("reconnects", s.reconnects)?;
    t.raw_set("exiting", s.exiting)?;
    t.raw_set("authenticates", s.authenticates)?;
    t.raw_set("tls_handshakes", s.tls_handshakes)?;
    Ok(Some(t))
}

/// Builds the exports table of `require "etcd_grpc_core"`.
pub fn exports(lua: &Lua) -> LuaResult<Table> {
    crate::runtime::install_fork_hook();
    let t = lua.create_table()?;
    t.set("client", lua.create_function(client)?)?;
    t.set("drain", lua.create_function(drain)?)?;
    t.set("doorbell", lua.create_function(doorbell)?)?;
    t.set("stats", lua.create_function(stats)?)?;
    t.set("notices", lua.create_function(|lua, ()| notices(lua))?)?;
    t.set(
        "begin_exit",
        lua.create_function(|_, ()| {
            if let Some(w) = worker::existing() {
                w.begin_exit();
            }
            Ok(())
        })?,
    )?;
    t.set(
        "shutdown",
        lua.create_function(|_, ()| {
            if let Some(w) = worker::existing() {
                w.shutdown();
            }
            Ok(())
        })?,
    )?;
    t.set(
        "in_flight",
        lua.create_function(|_, ()| Ok(worker::existing().map_or(0, |w| w.in_flight())))?,
    )?;
    #[cfg(feature = "test-hooks")]
    {
        t.set(
            "test_set_idle_keep",
            lua.create_function(|_, ms: u64| {
                worker::set_idle_keep(ms);
                Ok(())
            })?,
        )?;
        t.set(
            "test_refuse_doorbells",
            lua.create_function(|_, n: u64| {
                worker::refuse_doorbells(n);
                Ok(())
            })?,
        )?;
    }
    t.set("test_hooks", cfg!(feature = "test-hooks"))?;
    t.set("version", env!("CARGO_PKG_VERSION"))?;
    Ok(t)
}
