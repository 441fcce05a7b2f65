//! Unit tests of connection configs, keys and failover.

use super::*;

#[test]
fn equal_configs_share_a_key() {
    let a = Config::new(vec!["http://127.0.0.1:2379".into()]);
    let mut b = Config::new(vec!["http://127.0.0.1:2379".into()]);
    b.first = 1;
    assert_eq!(
        a.key(),
        b.key(),
        "where a client starts is not its identity"
    );
    let c = Config::new(vec!["http://127.0.0.1:2380".into()]);
    assert_ne!(a.key(), c.key());
}

fn secret(s: &str) -> crate::tls::Secret {
    crate::tls::Secret(s.as_bytes().to_vec().into())
}

#[test]
fn every_tls_setting_and_credential_is_in_the_key() {
    let base = Config::new(vec!["https://127.0.0.1:2379".into()]);
    let mut variants = Vec::new();
    let mut c = base.clone();
    c.tls.verify = false;
    variants.push(c);
    let mut c = base.clone();
    c.tls.sni = Some("etcd.local".into());
    variants.push(c);
    let mut c = base.clone();
    c.tls.ca = Some(secret("ca"));
    variants.push(c);
    let mut c = base.clone();
    c.tls.identity = Some(crate::tls::Identity {
        cert: secret("cert"),
        key: secret("key"),
    });
    variants.push(c.clone());
    c.tls.identity = Some(crate::tls::Identity {
        cert: secret("cert"),
        key: secret("other key"),
    });
    variants.push(c);
    let mut c = base.clone();
    c.max_recv = 1;
    variants.push(c);
    for user in ["root", "alice"] {
        for pw in ["a", "b"] {
            let mut c = base.clone();
            c.credentials = Some(Credentials {
                user: user.into(),
                password: secret(pw),
            });
            variants.push(c);
        }
    }
    let keys: std::collections::HashSet<Key> = variants.iter().map(Config::key).collect();
    assert_eq!(keys.len(), variants.len());
    assert!(!keys.contains(&base.key()));
}

#[test]
fn debug_shows_no_secret() {
    let mut c = Config::new(vec!["https://127.0.0.1:2379".into()]);
    c.tls.identity = Some(crate::tls::Identity {
        cert: secret("-----BEGIN CERTIFICATE-----"),
        key: secret("-----BEGIN PRIVATE KEY----- k3y"),
    });
    c.credentials = Some(Credentials {
        user: "root".into(),
        password: secret("pa55word"),
    });
    for text in [format!("{c:?}"), format!("{:?}", c.key())] {
        assert!(!text.contains("k3y") && !text.contains("BEGIN"), "{text}");
        assert!(!text.contains("pa55word"), "{text}");
        assert!(text.contains("root"), "{text}");
    }
}

#[test]
fn bad_endpoint_is_an_error_not_a_panic() {
    let c = Config::new(vec!["http://bad host:1".into()]);
    assert!(matches!(c.validate(), Err(Error::InvalidArgument(_))));
    assert!(Config::new(vec![]).validate().is_err());
}

#[test]
fn failover_rotates_and_wraps() {
    let rt = crate::runtime::build_throwaway_runtime().unwrap();
    let _g = rt.enter();
    let mut cfg = Config::new(vec![
        "http://127.0.0.1:1".into(),
        "http://127.0.0.1:2".into(),
    ]);
    cfg.first = 1;
    let c = Connection::new(cfg).unwrap();
    let r = c.crud().unwrap();
    assert_eq!(r.endpoint, "http://127.0.0.1:2");
    c.report_failure(&r);
    assert_eq!(c.crud().unwrap().endpoint, "http://127.0.0.1:1");
    // a stale report (from the old route) does not skip an endpoint
    c.report_failure(&r);
    assert_eq!(c.crud().unwrap().endpoint, "http://127.0.0.1:1");
}
