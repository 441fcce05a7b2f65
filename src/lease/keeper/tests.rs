//! The keepers' bookkeeping without etcd: cadence, sharing, loss,
//! cancellation and the reset after a panic.

use super::*;

fn session() -> (
    KeepSession,
    Requests,
    mpsc::UnboundedReceiver<PbLeaseKeepAliveRequest>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    (KeepSession::default(), tx, rx)
}

fn sent(rx: &mut mpsc::UnboundedReceiver<PbLeaseKeepAliveRequest>) -> Vec<i64> {
    let mut ids = Vec::new();
    while let Ok(r) = rx.try_recv() {
        ids.push(r.id);
    }
    ids
}

fn answer(id: i64, ttl: i64) -> PbLeaseKeepAliveResponse {
    PbLeaseKeepAliveResponse {
        header: None,
        id,
        ttl,
    }
}

#[test]
fn renewal_period_is_a_third_of_the_ttl_with_a_floor() {
    assert_eq!(period(30), Duration::from_secs(10));
    assert_eq!(period(2), Duration::from_millis(666));
    assert_eq!(period(1), MIN_PERIOD);
    assert_eq!(period(-5), MIN_PERIOD);
}

#[tokio::test]
async fn keepers_of_one_lease_share_its_renewals_and_follow_the_ttl() {
    let (mut s, out, mut rx) = session();
    let (a, a_rx) = watch::channel(KeeperState::Alive);
    let (b, _b_rx) = watch::channel(KeeperState::Alive);
    s.offline(Cmd::Add(1, 42, a));
    s.offline(Cmd::Add(2, 42, b));
    s.start(&out);
    assert_eq!(sent(&mut rx), [42], "one renewal per lease, not per keeper");
    s.on_response(answer(42, 30), &out);
    let next = s.next_tick().unwrap();
    let wait = next - Instant::now();
    assert!(
        wait > Duration::from_secs(9) && wait <= Duration::from_secs(10),
        "{wait:?}"
    );
    s.tick(&out);
    assert!(sent(&mut rx).is_empty(), "renewed before TTL/3");
    assert_eq!(*a_rx.borrow(), KeeperState::Alive);
    assert_eq!(s.figures.keepers.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn ttl_zero_means_lost_for_every_keeper_of_the_lease() {
    let (mut s, out, mut rx) = session();
    let (a, a_rx) = watch::channel(KeeperState::Alive);
    let (b, b_rx) = watch::channel(KeeperState::Alive);
    let (c, c_rx) = watch::channel(KeeperState::Alive);
    s.online(Cmd::Add(1, 7, a), &out);
    s.online(Cmd::Add(2, 7, b), &out);
    s.online(Cmd::Add(3, 8, c), &out);
    assert_eq!(sent(&mut rx), [7, 8]);
    s.on_response(answer(7, 0), &out);
    assert_eq!(*a_rx.borrow(), KeeperState::Lost);
    assert_eq!(*b_rx.borrow(), KeeperState::Lost);
    assert_eq!(*c_rx.borrow(), KeeperState::Alive);
    assert_eq!(s.figures.keepers.load(Ordering::Relaxed), 1);
    assert!(!s.leases.contains_key(&7));
}

#[tokio::test]
async fn a_canceled_keeper_stops_its_lease_only_when_it_was_the_last() {
    let (mut s, out, _rx) = session();
    let (a, a_rx) = watch::channel(KeeperState::Alive);
    let (b, b_rx) = watch::channel(KeeperState::Alive);
    s.online(Cmd::Add(1, 7, a), &out);
    s.online(Cmd::Add(2, 7, b), &out);
    s.online(Cmd::Remove(1), &out);
    assert_eq!(*a_rx.borrow(), KeeperState::Canceled);
    assert_eq!(*b_rx.borrow(), KeeperState::Alive);
    assert!(s.leases.contains_key(&7));
    s.online(Cmd::Remove(2), &out);
    assert!(s.is_idle());
    assert!(s.schedule.is_empty());
    assert_eq!(*b_rx.borrow(), KeeperState::Canceled);
}

#[tokio::test]
async fn an_unanswered_renewal_is_sent_again_and_a_panic_resets_the_schedule() {
    let (mut s, out, mut rx) = session();
    let (a, _a_rx) = watch::channel(KeeperState::Alive);
    s.online(Cmd::Add(1, 9, a), &out);
    assert_eq!(sent(&mut rx), [9]);
    let resend = s.next_tick().unwrap() - Instant::now();
    assert!(resend <= RESEND && resend > RESEND / 2, "{resend:?}");
    s.schedule.clear(); // as a panic half-way might leave it
    s.on_panic("boom");
    s.tick(&out);
    assert_eq!(
        sent(&mut rx),
        [9],
        "the lease was dropped from the schedule"
    );
}
