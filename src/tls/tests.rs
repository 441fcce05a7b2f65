//! Unit tests of the TLS settings: option pairs, file errors, reasons.

use super::*;

fn src() -> Sources {
    Sources::default()
}

fn err(s: &Sources) -> String {
    Tls::load(s).unwrap_err().to_string()
}

#[test]
fn defaults_verify_with_system_roots() {
    let t = Tls::load(&src()).unwrap();
    assert_eq!(t, Tls::default());
    assert!(t.verify && t.ca.is_none() && t.identity.is_none());
}

#[test]
fn half_a_pair_or_both_forms_are_refused() {
    let mut s = src();
    s.cert = Some(b"x".to_vec());
    assert_eq!(
        err(&s),
        "ssl_cert: a client certificate needs its key (ssl_key_path or ssl_key)"
    );
    let mut s = src();
    s.key_path = Some("/nonexistent/k.pem".into());
    assert!(err(&s).starts_with("ssl_key_path: cannot read /nonexistent/k.pem"));
    let mut s = src();
    s.key = Some(b"x".to_vec());
    assert_eq!(
        err(&s),
        "ssl_key: a client key needs its certificate (ssl_cert_path or ssl_cert)"
    );
    let mut s = src();
    s.cert = Some(b"x".to_vec());
    s.cert_path = Some("/x".into());
    assert_eq!(
        err(&s),
        "cannot specify both 'ssl_cert' and 'ssl_cert_path'"
    );
    let mut s = src();
    s.key = Some(b"x".to_vec());
    s.key_path = Some("/x".into());
    assert_eq!(err(&s), "cannot specify both 'ssl_key' and 'ssl_key_path'");
}

#[test]
fn unreadable_or_invalid_material_names_the_option_and_file() {
    let mut s = src();
    s.trusted_ca = Some("/nonexistent/ca.pem".into());
    let e = err(&s);
    assert!(
        e.starts_with("trusted_ca: cannot read /nonexistent/ca.pem: "),
        "{e}"
    );
    let dir = std::env::temp_dir().join(format!("etcd-grpc-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let mut s = src();
    s.trusted_ca = Some(junk.to_string_lossy().into_owned());
    assert_eq!(err(&s), "trusted_ca: no certificate found");
    let mut s = src();
    s.cert = Some(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec());
    s.key = Some(b"no key here".to_vec());
    let e = err(&s);
    assert!(e.starts_with("ssl_key: no usable private key"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn key_material_is_redacted_in_debug() {
    let t = Tls {
        identity: Some(Identity {
            cert: Secret(b"CERTBYTES".to_vec().into()),
            key: Secret(b"KEYBYTES".to_vec().into()),
        }),
        ..Tls::default()
    };
    let text = format!("{t:?}");
    assert!(
        !text.contains("KEYBYTES") && !text.contains("CERTBYTES"),
        "{text}"
    );
    assert!(text.contains("redacted 8 bytes"), "{text}");
}

#[test]
fn names_sent_and_verified() {
    let t = Tls::default();
    assert!(matches!(
        t.server_name("127.0.0.1").unwrap(),
        ServerName::IpAddress(_)
    ));
    assert!(matches!(
        t.server_name("[::1]").unwrap(),
        ServerName::IpAddress(_)
    ));
    let t = Tls {
        sni: Some("etcd.example".into()),
        ..Tls::default()
    };
    assert_eq!(
        t.server_name("127.0.0.1").unwrap(),
        ServerName::try_from("etcd.example").unwrap()
    );
}

#[test]
fn rustls_errors_read_like_the_contract() {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    let r = |e| reason(&e);
    assert_eq!(
        r(E::InvalidCertificate(C::UnknownIssuer)),
        "unable to get local issuer certificate"
    );
    assert_eq!(
        r(E::InvalidCertificate(C::NotValidForName)),
        "certificate host mismatch"
    );
    assert_eq!(
        r(E::InvalidCertificate(C::Expired)),
        "certificate has expired"
    );
    assert!(r(E::AlertReceived(A::CertificateRequired)).starts_with("handshake failed"));
    assert!(r(E::AlertReceived(A::BadCertificate)).contains("bad certificate"));
    assert_eq!(r(E::HandshakeNotComplete), "handshake failed");
}

#[test]
fn a_tls_alert_below_io_is_found() {
    let io = std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired),
    );
    let found = reason_in(&io).unwrap();
    assert!(found.contains("requires a client certificate"), "{found}");
    let f = Failure("certificate host mismatch".into());
    assert_eq!(reason_in(&f).unwrap(), "certificate host mismatch");
}
