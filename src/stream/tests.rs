//! The supervisor without etcd: backoff bounds, panic containment and
//! shutdown, with a session that never needs a stream.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::connection::{Config, Connection};

#[test]
fn backoff_is_jittered_doubling_and_capped() {
    let (base, max) = (Duration::from_millis(100), Duration::from_millis(800));
    let mut b = Backoff::new(base, max);
    let mut step = base;
    for _ in 0..8 {
        let d = b.next_delay();
        assert!(
            d >= step / 2 && d <= step,
            "{d:?} outside [{:?}, {step:?}]",
            step / 2
        );
        step = (step * 2).min(max);
    }
    b.reset();
    assert!(b.next_delay() <= base);
    // two supervisors do not draw the same delays
    let mut a = Backoff::new(Duration::from_secs(1), Duration::from_secs(1));
    let mut c = Backoff::new(Duration::from_secs(1), Duration::from_secs(1));
    let same = (0..16).filter(|_| a.next_delay() == c.next_delay()).count();
    assert!(same < 16);
}

/// A session that is always idle and records what happens to it; the
/// command 13 panics.
#[derive(Default, Clone)]
struct Probe(Arc<Mutex<Vec<String>>>);

impl Probe {
    fn log(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

impl Session for Probe {
    type Cmd = u32;
    type Req = ();
    type Resp = ();

    fn call(_: Channel, _: usize, _: tonic::Request<RequestStream<()>>) -> Opened<()> {
        Box::pin(async { Err(tonic::Status::unavailable("no stream in this test")) })
    }
    fn is_idle(&self) -> bool {
        true
    }
    fn offline(&mut self, cmd: u32) {
        if cmd == 13 {
            panic!("unlucky command");
        }
        self.0.lock().unwrap().push(format!("cmd {cmd}"));
    }
    fn online(&mut self, cmd: u32, _: &Outbound<()>) {
        self.offline(cmd)
    }
    fn start(&mut self, _: &Outbound<()>) {}
    fn on_response(&mut self, _: (), _: &Outbound<()>) {}
    fn on_panic(&mut self, msg: &str) {
        self.0.lock().unwrap().push(format!("panic {msg}"));
    }
    fn on_shutdown(&mut self) {
        self.0.lock().unwrap().push("shutdown".into());
    }
}

/// A supervised probe on a connection it never streams over.
struct Running {
    _conn: Arc<Connection>,
    trigger: ShutdownTrigger,
    probe: Probe,
    cmds: mpsc::UnboundedSender<u32>,
    counters: Arc<Counters>,
}

fn running() -> Running {
    let conn = Arc::new(Connection::new(Config::new(vec!["http://127.0.0.1:1".into()])).unwrap());
    let (trigger, signal) = shutdown_signal();
    let probe = Probe::default();
    let backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(20));
    let (cmds, counters) = spawn(
        probe.clone(),
        Arc::downgrade(&conn),
        Metadata::default(),
        signal,
        backoff,
    );
    Running {
        _conn: conn,
        trigger,
        probe,
        cmds,
        counters,
    }
}

/// Waits up to 5 s (a loaded machine is slow) until the probe logged
/// `n` entries.
async fn settle(probe: &Probe, n: usize) {
    for _ in 0..100 {
        if probe.log().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_contained_reported_and_the_task_serves_on() {
    let Running {
        _conn,
        trigger,
        probe,
        cmds,
        counters,
    } = running();
    cmds.send(1).unwrap();
    cmds.send(13).unwrap();
    cmds.send(2).unwrap();
    settle(&probe, 3).await;
    assert_eq!(
        probe.log(),
        ["cmd 1", "panic internal error: unlucky command", "cmd 2"]
    );
    assert_eq!(counters.panics.load(Ordering::Relaxed), 1);
    trigger.fire();
    settle(&probe, 4).await;
    assert_eq!(probe.log().last().map(String::as_str), Some("shutdown"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(cmds.send(3).is_err(), "the task still runs after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_ends_when_its_handles_are_gone() {
    let Running {
        _conn, probe, cmds, ..
    } = running();
    drop(cmds);
    settle(&probe, 1).await;
    assert_eq!(probe.log(), ["shutdown"]);
}
