//! The command line's security flags: the cluster secret, and the refusal to serve a network
//! without one.
//!
//! `--cluster-secret-file PATH` (or `HYPERDEX_CLUSTER_SECRET_FILE`) names a file whose
//! contents (at least 16 bytes; a trailing newline is ignored) every coordinator, daemon and
//! admin tool of a cluster shares. A coordinator or daemon asked to listen on an address
//! other than loopback without one refuses to start unless `--insecure` says that is meant:
//! anyone who could reach the port could join the cluster, copy its data or change it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::protocol::auth::Secret;
use crate::tls::{ServerTls, TlsClient};

/// Flags of the commands that run servers.
#[derive(Args, Debug, Clone, Default)]
pub struct SecurityFlags {
    /// File with the cluster secret (at least 16 bytes), the same on every coordinator,
    /// daemon and admin host.
    #[arg(
        long = "cluster-secret-file",
        env = "HYPERDEX_CLUSTER_SECRET_FILE",
        value_name = "PATH"
    )]
    pub cluster_secret_file: Option<PathBuf>,
    /// Listen on an address other than loopback without a cluster secret.
    #[arg(long = "insecure")]
    pub insecure: bool,
    /// PEM certificate (chain) to present: every connection to this server is then TLS.
    #[arg(
        long = "tls-cert",
        env = "HYPERDEX_TLS_CERT",
        value_name = "PATH",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(
        long = "tls-key",
        env = "HYPERDEX_TLS_KEY",
        value_name = "PATH",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// PEM certificate authority that the other servers' certificates are checked against.
    #[arg(long = "tls-ca", env = "HYPERDEX_TLS_CA", value_name = "PATH")]
    pub tls_ca: Option<PathBuf>,
}

/// Reads the secret in `path`, if one is named.
pub fn load_secret(path: Option<&Path>) -> Result<Option<Secret>, String> {
    let Some(path) = path else {
        return Ok(None);
    };
    let bytes = std::fs::read(path).map_err(|e| {
        format!(
            "cannot read the cluster secret file {}: {e}",
            path.display()
        )
    })?;
    warn_if_readable_by_others(path);
    Secret::new(&bytes)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                "the cluster secret file {} can be read by other users (chmod 600 it)",
                path.display()
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

/// Whether `host` is a loopback address (names other than `localhost` count as exposed).
fn loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl SecurityFlags {
    /// The TLS settings these flags name.
    pub fn server_tls(&self) -> Result<ServerTls, String> {
        ServerTls::from_files(
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
            self.tls_ca.as_deref(),
        )
    }

    /// The secret for a server that will listen on `host`, or why it must not start.
    pub fn server_secret(&self, host: &str) -> Result<Option<Secret>, String> {
        let secret = load_secret(self.cluster_secret_file.as_deref())?;
        if secret.is_none() && !loopback(host) && !self.insecure {
            return Err(format!(
                "refusing to listen on {host} without a cluster secret: anyone who can reach \
                 this port could join the cluster, copy its data or change it. Give \
                 --cluster-secret-file PATH (the same file on every coordinator, daemon and \
                 admin host), or --insecure to run without one"
            ));
        }
        Ok(secret)
    }
}

/// The client side of TLS: the authority in `ca`, if one is named.
pub fn client_tls(ca: Option<&Path>) -> Result<Option<TlsClient>, String> {
    ca.map(TlsClient::from_ca).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_may_go_without_a_secret() {
        let open = SecurityFlags::default();
        assert!(open.server_secret("127.0.0.1").is_ok());
        assert!(open.server_secret("::1").is_ok());
        assert!(open.server_secret("localhost").is_ok());
        let err = open.server_secret("0.0.0.0").unwrap_err();
        assert!(err.contains("--cluster-secret-file"), "{err}");
        assert!(open.server_secret("10.1.2.3").is_err());
        let insecure = SecurityFlags {
            insecure: true,
            ..SecurityFlags::default()
        };
        assert!(insecure.server_secret("0.0.0.0").is_ok());
    }
}
