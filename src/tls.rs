//! TLS for every link (rustls): servers present a certificate (`--tls-cert`, `--tls-key`)
//! and accept only TLS; whoever connects to them (clients, admin tools, daemons reaching the
//! coordinator and their peers) verifies it against a certificate authority (`--tls-ca`), by
//! the host name or IP address it connects to. Authentication of roles stays the cluster
//! secret's (see `protocol::auth`); TLS adds confidentiality and integrity on the wire.
//!
//! The simulation's network is not TLS: under `--cfg madsim` the same types exist, but
//! making one says TLS is not available there.

use std::path::Path;

use tokio::io::{AsyncRead, AsyncWrite};

/// A connection's byte stream, plain or TLS.
pub trait AsyncStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncStream for T {}

/// A boxed stream, whatever carries it.
pub type Stream = Box<dyn AsyncStream>;

#[cfg(not(madsim))]
mod real {
    use std::io;
    use std::path::Path;
    use std::sync::Arc;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use rustls::{ClientConfig, RootCertStore, ServerConfig};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    use super::Stream;
    use crate::rt::TcpStream;

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
        let certs: Vec<_> = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("bad certificate in {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("no certificate in {}", path.display()));
        }
        Ok(certs)
    }

    /// A server's side: its certificate chain and key.
    #[derive(Clone)]
    pub struct TlsServer(TlsAcceptor);

    impl TlsServer {
        pub fn from_pem(cert: &Path, key: &Path) -> Result<TlsServer, String> {
            let chain = certs(cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("cannot read a private key from {}: {e}", key.display()))?;
            let config = ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .map_err(|e| format!("the certificate and key do not go together: {e}"))?;
            Ok(TlsServer(TlsAcceptor::from(Arc::new(config))))
        }

        pub async fn accept(&self, tcp: TcpStream) -> io::Result<Stream> {
            Ok(Box::new(self.0.accept(tcp).await?))
        }
    }

    /// A connecting side: the certificate authorities it trusts.
    #[derive(Clone)]
    pub struct TlsClient(TlsConnector);

    impl TlsClient {
        pub fn from_ca(ca: &Path) -> Result<TlsClient, String> {
            let mut roots = RootCertStore::empty();
            for c in certs(ca)? {
                roots
                    .add(c)
                    .map_err(|e| format!("bad authority in {}: {e}", ca.display()))?;
            }
            let config = ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(TlsClient(TlsConnector::from(Arc::new(config))))
        }

        /// Runs the TLS handshake on `tcp`, checking the certificate names `host`.
        pub async fn connect(&self, host: &str, tcp: TcpStream) -> io::Result<Stream> {
            let name = ServerName::try_from(
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
            )
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host}: {e}")))?;
            Ok(Box::new(self.0.connect(name, tcp).await?))
        }
    }
}

#[cfg(madsim)]
mod real {
    use std::io;
    use std::path::Path;

    use super::Stream;
    use crate::rt::TcpStream;

    const NOT_SIMULATED: &str = "TLS is not available in the simulation";

    #[derive(Clone)]
    pub struct TlsServer;

    impl TlsServer {
        pub fn from_pem(_cert: &Path, _key: &Path) -> Result<TlsServer, String> {
            Err(NOT_SIMULATED.into())
        }

        pub async fn accept(&self, _tcp: TcpStream) -> io::Result<Stream> {
            Err(io::Error::other(NOT_SIMULATED))
        }
    }

    #[derive(Clone)]
    pub struct TlsClient;

    impl TlsClient {
        pub fn from_ca(_ca: &Path) -> Result<TlsClient, String> {
            Err(NOT_SIMULATED.into())
        }

        pub async fn connect(&self, _host: &str, _tcp: TcpStream) -> io::Result<Stream> {
            Err(io::Error::other(NOT_SIMULATED))
        }
    }
}

pub use real::{TlsClient, TlsServer};

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsServer")
    }
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsClient")
    }
}

/// The TLS settings of a server: what it presents, and what it trusts when it connects to
/// other servers.
#[derive(Clone, Debug, Default)]
pub struct ServerTls {
    pub accept: Option<TlsServer>,
    pub connect: Option<TlsClient>,
}

impl ServerTls {
    /// From the command line's files: a certificate and key make the server TLS-only; an
    /// authority is what it checks the servers it connects to against.
    pub fn from_files(
        cert: Option<&Path>,
        key: Option<&Path>,
        ca: Option<&Path>,
    ) -> Result<ServerTls, String> {
        let accept = match (cert, key) {
            (Some(c), Some(k)) => Some(TlsServer::from_pem(c, k)?),
            (None, None) => None,
            _ => return Err("--tls-cert and --tls-key go together".into()),
        };
        let connect = ca.map(TlsClient::from_ca).transpose()?;
        if accept.is_some() && connect.is_none() {
            return Err(
                "a TLS server needs --tls-ca too: it connects to the other servers over TLS".into(),
            );
        }
        Ok(ServerTls { accept, connect })
    }
}
