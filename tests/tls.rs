//! Every link over TLS: a cluster whose coordinator and daemons present certificates from a
//! test authority (made here with rcgen) and share a secret; clients and admin tools that
//! trust the authority work as usual, a plain-TCP client and one trusting another authority
//! are turned away.
#![cfg(not(madsim))]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyperdex::client::{Client, ClientOptions};
use hyperdex::tls::TlsClient;
use hyperdex_model::Value;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use support::{temp_dir, ProcCluster};

/// A certificate authority and a server certificate for 127.0.0.1 and localhost signed by
/// it, as PEM files in `dir`: (ca, cert, key).
fn certificates(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let key = KeyPair::generate().expect("server key");
    let params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("server params");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("server cert");
    let paths = (
        dir.join(format!("{name}-ca.pem")),
        dir.join(format!("{name}-cert.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    std::fs::write(&paths.0, ca.pem()).expect("write");
    std::fs::write(&paths.1, cert.pem()).expect("write");
    std::fs::write(&paths.2, key.serialize_pem()).expect("write");
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_speaks_tls_on_every_link() {
    let dir = temp_dir("tls-certs");
    let (ca, cert, key) = certificates(&dir, "cluster");
    let env = vec![
        ("HYPERDEX_TLS_CERT".to_string(), cert.display().to_string()),
        ("HYPERDEX_TLS_KEY".to_string(), key.display().to_string()),
        ("HYPERDEX_TLS_CA".to_string(), ca.display().to_string()),
    ];
    let cluster = ProcCluster::start_with_env(
        "tls",
        3,
        Some("the secret of the cluster that speaks tls"),
        env,
    );
    // Admin commands through the command line (they read the same environment).
    let out = cluster.hyperdex(&["add-space"], Some("space kv key k attributes int n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cluster.hyperdex(&["put", "kv", "a", r#"{"n": 5}"#], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The Rust client, trusting the authority.
    let trusting = ClientOptions {
        tls: Some(TlsClient::from_ca(&ca).expect("ca")),
        ..ClientOptions::default()
    };
    let client = Client::connect_with(&cluster.addr(), trusting)
        .await
        .expect("client");
    assert_eq!(
        client.get("kv", "a").await.expect("get").expect("a")["n"],
        Value::Int(5)
    );
    client
        .put("kv", "b", vec![("n", Value::Int(6))])
        .await
        .expect("put");

    // Plain TCP, and TLS trusting another authority, are turned away.
    let quick = ClientOptions {
        timeout: Duration::from_secs(2),
        attempt_timeout: Duration::from_secs(1),
        ..ClientOptions::default()
    };
    assert!(Client::connect_with(&cluster.addr(), quick.clone())
        .await
        .is_err());
    let (other_ca, _, _) = certificates(&dir, "other");
    let wrong = ClientOptions {
        tls: Some(TlsClient::from_ca(&other_ca).expect("ca")),
        ..quick
    };
    assert!(Client::connect_with(&cluster.addr(), wrong).await.is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
