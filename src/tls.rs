//! TLS for `https://` endpoints: the client's TLS settings as a value (part
//! of the connection key), the rustls configuration built from them, and
//! the connector that dials TCP, shakes hands and hands tonic an HTTP/2-ready
//! stream.
//!
//! Certificates and keys are read and parsed when the client is made, so a
//! bad file fails `new()`; nothing is read again at call time. Key material
//! never appears in `Debug` output. Handshake failures are reported with
//! the stable texts of lua-resty-etcd's contract (nginx/OpenSSL's wording)
//! where the meaning matches, see [`reason`].

use std::fmt;
use std::sync::{Arc, OnceLock};

use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use crate::error::{Error, Result};

/// Bytes compared and hashed by content, shown only by length.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(pub Arc<[u8]>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} bytes>", self.0.len())
    }
}

/// A client certificate chain and its private key, both PEM.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The certificate chain (public; shown by length anyway).
    pub cert: Secret,
    /// The private key.
    pub key: Secret,
}

/// Every TLS setting of a client. Equal settings share a connection.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Tls {
    /// Whether the server's certificate is verified (`ssl_verify`).
    pub verify: bool,
    /// The name sent and verified instead of the endpoint's host (`sni`).
    pub sni: Option<String>,
    /// PEM CA bundle (`trusted_ca`); `None` means the system's roots.
    pub ca: Option<Secret>,
    /// The client certificate for mTLS.
    pub identity: Option<Identity>,
}

impl Default for Tls {
    fn default() -> Tls {
        Tls {
            verify: true,
            sni: None,
            ca: None,
            identity: None,
        }
    }
}

/// The TLS options as the caller gave them: paths or PEM contents.
#[derive(Default)]
pub struct Sources {
    /// `ssl_verify` (`None`: true).
    pub verify: Option<bool>,
    /// `sni`.
    pub sni: Option<String>,
    /// `trusted_ca`: a path.
    pub trusted_ca: Option<String>,
    /// `ssl_cert_path`, `ssl_key_path`: paths.
    pub cert_path: Option<String>,
    /// See `cert_path`.
    pub key_path: Option<String>,
    /// `ssl_cert`, `ssl_key`: PEM contents.
    pub cert: Option<Vec<u8>>,
    /// See `cert`.
    pub key: Option<Vec<u8>>,
}

fn read(option: &str, path: &str) -> Result<Secret> {
    std::fs::read(path)
        .map(|b| Secret(b.into()))
        .map_err(|e| Error::InvalidArgument(format!("{option}: cannot read {path}: {e}")))
}

/// One half of the client certificate pair: from a file or inline PEM,
/// never both.
fn half(
    path: &Option<String>,
    inline: &Option<Vec<u8>>,
    path_opt: &str,
    inline_opt: &str,
) -> Result<Option<(Secret, String)>> {
    match (path, inline) {
        (Some(_), Some(_)) => Err(Error::InvalidArgument(format!(
            "cannot specify both '{inline_opt}' and '{path_opt}'"
        ))),
        (Some(p), None) => Ok(Some((read(path_opt, p)?, format!("{path_opt}: {p}")))),
        (None, Some(b)) => Ok(Some((Secret(b.clone().into()), inline_opt.to_string()))),
        (None, None) => Ok(None),
    }
}

impl Tls {
    /// Reads and checks the caller's options: files exist and parse, the
    /// pair is complete, the key matches the certificate.
    pub fn load(src: &Sources) -> Result<Tls> {
        let ca = match &src.trusted_ca {
            Some(p) => Some(read("trusted_ca", p)?),
            None => None,
        };
        let cert = half(&src.cert_path, &src.cert, "ssl_cert_path", "ssl_cert")?;
        let key = half(&src.key_path, &src.key, "ssl_key_path", "ssl_key")?;
        let identity = match (cert, key) {
            (Some((cert, _)), Some((key, _))) => Some(Identity { cert, key }),
            (None, None) => None,
            (Some((_, what)), None) => {
                return Err(Error::InvalidArgument(format!(
                    "{}: a client certificate needs its key (ssl_key_path or ssl_key)",
                    option_name(&what)
                )))
            }
            (None, Some((_, what))) => {
                return Err(Error::InvalidArgument(format!(
                    "{}: a client key needs its certificate (ssl_cert_path or ssl_cert)",
                    option_name(&what)
                )))
            }
        };
        let tls = Tls {
            verify: src.verify.unwrap_or(true),
            sni: src.sni.clone().filter(|s| !s.is_empty()),
            ca,
            identity,
        };
        tls.client_config()?;
        Ok(tls)
    }

    /// The rustls configuration for these settings (ALPN `h2`).
    pub fn client_config(&self) -> Result<Arc<ClientConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Internal(format!("tls: {e}")))?;
        let builder = if self.verify {
            builder.with_root_certificates(self.roots()?)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        };
        let mut config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some(id) => {
                let certs = certs(&id.cert, "ssl_cert")?;
                let key = PrivateKeyDer::from_pem_slice(&id.key.0).map_err(|e| {
                    Error::InvalidArgument(format!("ssl_key: no usable private key: {e}"))
                })?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| match e {
                        rustls::Error::InconsistentKeys(_) => Error::InvalidArgument(
                            "ssl_key: the key does not belong to the certificate".into(),
                        ),
                        e => Error::InvalidArgument(format!("ssl_key: {e}")),
                    })?
            }
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    fn roots(&self) -> Result<RootCertStore> {
        let mut roots = RootCertStore::empty();
        match &self.ca {
            Some(pem) => {
                for c in certs(pem, "trusted_ca")? {
                    roots.add(c).map_err(|e| {
                        Error::InvalidArgument(format!("trusted_ca: unusable certificate: {e}"))
                    })?;
                }
            }
            None => roots = system_roots().clone(),
        }
        Ok(roots)
    }

    /// The name to send and verify for an endpoint on `host`: `sni` when
    /// set, else the host (an IP literal is verified against IP SANs and
    /// sends no SNI, as TLS requires).
    pub fn server_name(&self, host: &str) -> Result<ServerName<'static>> {
        let name = self.sni.as_deref().unwrap_or(host);
        let name = name.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(name.to_string())
            .map_err(|_| Error::InvalidArgument(format!("sni: invalid server name: {name}")))
    }
}

/// Which option a half pair came from (`ssl_cert_path: /x` → `ssl_cert_path`).
fn option_name(what: &str) -> &str {
    what.split(':').next().unwrap_or(what)
}

fn certs(pem: &Secret, option: &str) -> Result<Vec<CertificateDer<'static>>> {
    let list: Vec<_> = CertificateDer::pem_slice_iter(&pem.0)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::InvalidArgument(format!("{option}: invalid PEM: {e}")))?;
    if list.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{option}: no certificate found"
        )));
    }
    Ok(list)
}

/// The system's trust anchors, loaded once per process.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        roots
    })
}

/// `ssl_verify = false`: any certificate for any name is accepted; the
/// handshake's signatures are still checked, so the peer holds the key of
/// the certificate it sent (it is just not known to be etcd).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS failure with its stable reason (`certificate host mismatch`, ...).
#[derive(Debug)]
pub struct Failure(pub String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

/// The stable text for a rustls error: nginx/OpenSSL's wording from the
/// contract where the meaning is the same, else a short reason.
pub fn reason(err: &rustls::Error) -> String {
    use rustls::{AlertDescription as A, CertificateError as C};
    match err {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => "unable to get local issuer certificate".into(),
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "certificate host mismatch".into()
            }
            C::Expired | C::ExpiredContext { .. } => "certificate has expired".into(),
            C::NotValidYet | C::NotValidYetContext { .. } => "certificate is not yet valid".into(),
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
                "unsupported certificate purpose".into()
            }
            _ => "certificate verify failed".into(),
        },
        rustls::Error::AlertReceived(A::CertificateRequired) => {
            "handshake failed: the server requires a client certificate".into()
        }
        rustls::Error::AlertReceived(
            A::BadCertificate | A::UnknownCA | A::UnsupportedCertificate | A::CertificateUnknown,
        ) => "handshake failed: bad certificate (the server refused the client certificate)".into(),
        _ => "handshake failed".into(),
    }
}

/// The stable TLS reason carried by `err` itself, if any: our connector's
/// [`Failure`], or a rustls error inside an I/O error, also below h2 (which
/// exposes its I/O cause only through `get_io`). After the handshake, a
/// TLS 1.3 server's refusal of the client certificate arrives this way, as
/// an alert on the first read.
pub fn reason_in(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    if let Some(f) = err.downcast_ref::<Failure>() {
        return Some(f.0.clone());
    }
    let io = match err.downcast_ref::<h2::Error>() {
        Some(h) => h.get_io(),
        None => err.downcast_ref::<std::io::Error>(),
    }?;
    let inner = io.get_ref()?;
    inner.downcast_ref::<rustls::Error>().map(reason)
}

mod connect;
pub use connect::{Connector, Replay};

#[cfg(test)]
mod tests;
