//! Who is at the other end of a connection: the cluster secret and the challenge-response
//! that proves knowledge of it without sending it.
//!
//! A connection that sends an ordinary request first is an anonymous **client**: it may read
//! the configuration and send operations to daemons, nothing else. Daemons and admin tools
//! open their connections with [`AuthMessage::Hello`], naming their [`Role`] (and a daemon its
//! server id, once it has one):
//!
//! ```text
//! opener   -> Hello { role, server, nonce_o }
//! acceptor -> Challenge { nonce_a, proof_a }     proof_a = HMAC(secret, "acceptor" | nonce_o | nonce_a)
//! opener   -> Prove { proof_o }                  proof_o = HMAC(secret, "opener" | role | server | nonce_o | nonce_a)
//! acceptor -> Welcome                            (or Error UNAUTHORIZED, and the connection closes)
//! ```
//!
//! Both sides prove they know the secret (HMAC-SHA256, compared in constant time), and the
//! proofs are bound to fresh nonces from both ends, so a recorded exchange cannot be
//! replayed. The secret never crosses the wire. Without a secret (loopback clusters, tests),
//! proofs are empty and every Hello is taken at its word: roles still separate the
//! conversations, but nothing is authenticated. Authentication covers the connection's
//! set-up only: someone who can rewrite traffic in flight needs TLS to be kept out.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::config::ServerId;

/// What a connection's opener is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// A client: configuration and operations only (what a connection is without a Hello).
    Client,
    /// A daemon: registration, heartbeats, chain and transfer messages.
    Server,
    /// An admin tool: changes to the configuration.
    Admin,
}

/// A random value used once per handshake.
pub type Nonce = [u8; 16];
/// An HMAC-SHA256 tag.
pub type Proof = [u8; 32];

/// The messages of the handshake.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthMessage {
    Hello {
        role: Role,
        server: Option<ServerId>,
        nonce: Nonce,
    },
    Challenge {
        nonce: Nonce,
        proof: Option<Proof>,
    },
    Prove {
        proof: Option<Proof>,
    },
    Welcome,
}

impl AuthMessage {
    pub fn name(&self) -> &'static str {
        match self {
            AuthMessage::Hello { .. } => "Hello",
            AuthMessage::Challenge { .. } => "Challenge",
            AuthMessage::Prove { .. } => "Prove",
            AuthMessage::Welcome => "Welcome",
        }
    }
}

/// The cluster secret shared by coordinators, daemons and admin tools.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The shortest secret accepted, in bytes.
pub const MIN_SECRET: usize = 16;

impl Secret {
    /// A secret from its bytes (a file's contents, without the trailing newline).
    pub fn new(bytes: &[u8]) -> Result<Secret, String> {
        let trimmed = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        let trimmed = trimmed.strip_suffix(b"\r").unwrap_or(trimmed);
        if trimmed.len() < MIN_SECRET {
            return Err(format!(
                "the cluster secret is {} bytes long; it must have at least {MIN_SECRET}",
                trimmed.len()
            ));
        }
        Ok(Secret(trimmed.to_vec()))
    }

    fn mac(&self, parts: &[&[u8]]) -> Hmac<Sha256> {
        // HMAC accepts keys of any length.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        for p in parts {
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p);
        }
        mac
    }

    fn prove(&self, parts: &[&[u8]]) -> Proof {
        self.mac(parts).finalize().into_bytes().into()
    }

    fn check(&self, parts: &[&[u8]], proof: &Proof) -> bool {
        self.mac(parts).verify_slice(proof).is_ok()
    }

    /// The acceptor's proof.
    pub fn acceptor_proof(&self, opener: &Nonce, acceptor: &Nonce) -> Proof {
        self.prove(&[b"acceptor", opener, acceptor])
    }

    /// The opener's proof, bound to what it claims to be.
    pub fn opener_proof(
        &self,
        role: Role,
        server: Option<ServerId>,
        opener: &Nonce,
        acceptor: &Nonce,
    ) -> Proof {
        self.prove(&opener_parts(role, server, opener, acceptor).each())
    }

    pub fn check_acceptor(&self, opener: &Nonce, acceptor: &Nonce, proof: &Proof) -> bool {
        self.check(&[b"acceptor", opener, acceptor], proof)
    }

    pub fn check_opener(
        &self,
        claim: (Role, Option<ServerId>),
        opener: &Nonce,
        acceptor: &Nonce,
        proof: &Proof,
    ) -> bool {
        self.check(
            &opener_parts(claim.0, claim.1, opener, acceptor).each(),
            proof,
        )
    }
}

struct OpenerParts {
    role: [u8; 1],
    server: [u8; 9],
    opener: Nonce,
    acceptor: Nonce,
}

impl OpenerParts {
    fn each(&self) -> [&[u8]; 5] {
        [
            b"opener",
            &self.role,
            &self.server,
            &self.opener,
            &self.acceptor,
        ]
    }
}

fn opener_parts(
    role: Role,
    server: Option<ServerId>,
    opener: &Nonce,
    acceptor: &Nonce,
) -> OpenerParts {
    let mut s = [0u8; 9];
    if let Some(id) = server {
        s[0] = 1;
        s[1..].copy_from_slice(&id.0.to_be_bytes());
    }
    OpenerParts {
        role: [role as u8],
        server: s,
        opener: *opener,
        acceptor: *acceptor,
    }
}

/// A fresh nonce from the runtime's randomness (seeded under the simulation).
pub fn nonce() -> Nonce {
    let mut n = [0u8; 16];
    n[..8].copy_from_slice(&crate::rt::random_u64().to_be_bytes());
    n[8..].copy_from_slice(&crate::rt::random_u64().to_be_bytes());
    n
}

/// Who a server has found at the other end of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub role: Role,
    /// The daemon's id, as it claimed it in its Hello or as the coordinator assigned it on
    /// this connection.
    pub server: Option<ServerId>,
    /// Whether the role was proven with the cluster secret.
    pub proven: bool,
}

impl Peer {
    /// A connection that sent no Hello.
    pub const ANONYMOUS: Peer = Peer {
        role: Role::Client,
        server: None,
        proven: false,
    };
}

/// The acceptor's side of a handshake, as a state machine: given the opener's Hello, the
/// challenge to send; given its proof, who the peer is (or why it is refused).
pub struct Acceptor<'a> {
    secret: Option<&'a Secret>,
    claim: (Role, Option<ServerId>),
    opener: Nonce,
    nonce: Nonce,
}

impl<'a> Acceptor<'a> {
    /// Starts a handshake on a Hello; returns the challenge to send.
    pub fn start(
        secret: Option<&'a Secret>,
        role: Role,
        server: Option<ServerId>,
        opener: Nonce,
        nonce: Nonce,
    ) -> (Acceptor<'a>, AuthMessage) {
        let proof = secret.map(|s| s.acceptor_proof(&opener, &nonce));
        let a = Acceptor {
            secret,
            claim: (role, server),
            opener,
            nonce,
        };
        (a, AuthMessage::Challenge { nonce, proof })
    }

    /// Checks the opener's proof.
    pub fn finish(self, proof: Option<Proof>) -> Result<Peer, String> {
        let (role, server) = self.claim;
        match (self.secret, proof) {
            (None, _) => Ok(Peer {
                role,
                server,
                proven: false,
            }),
            (Some(s), Some(p)) if s.check_opener(self.claim, &self.opener, &self.nonce, &p) => {
                Ok(Peer {
                    role,
                    server,
                    proven: true,
                })
            }
            (Some(_), Some(_)) => Err("the proof of the cluster secret is wrong".into()),
            (Some(_), None) => Err(
                "this cluster requires its secret (--cluster-secret-file) for this connection"
                    .into(),
            ),
        }
    }
}

/// The opener's answer to a challenge: its proof, or why it will not go on (the acceptor
/// could not prove it knows the secret this side has).
pub fn answer(
    secret: Option<&Secret>,
    claim: (Role, Option<ServerId>),
    opener: &Nonce,
    challenge: (&Nonce, Option<&Proof>),
) -> Result<Option<Proof>, String> {
    let (acceptor, their_proof) = challenge;
    let Some(s) = secret else {
        return Ok(None);
    };
    match their_proof {
        Some(p) if s.check_acceptor(opener, acceptor, p) => {}
        Some(_) => return Err("the server's proof of the cluster secret is wrong".into()),
        None => return Err("the server does not know the cluster secret".into()),
    }
    Ok(Some(s.opener_proof(claim.0, claim.1, opener, acceptor)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Secret {
        Secret::new(s.as_bytes()).unwrap()
    }

    fn handshake(
        opener_secret: Option<&Secret>,
        acceptor_secret: Option<&Secret>,
        claim: (Role, Option<ServerId>),
    ) -> Result<Peer, String> {
        let (o, a) = ([1u8; 16], [2u8; 16]);
        let (acceptor, challenge) = Acceptor::start(acceptor_secret, claim.0, claim.1, o, a);
        let AuthMessage::Challenge { nonce, proof } = challenge else {
            unreachable!()
        };
        let mine = answer(opener_secret, claim, &o, (&nonce, proof.as_ref()))?;
        acceptor.finish(mine)
    }

    #[test]
    fn members_who_share_the_secret_prove_it_to_each_other() {
        let s = secret("a cluster secret of some length");
        let peer = handshake(Some(&s), Some(&s), (Role::Server, Some(ServerId(3)))).unwrap();
        assert_eq!(
            peer,
            Peer {
                role: Role::Server,
                server: Some(ServerId(3)),
                proven: true
            }
        );
    }

    #[test]
    fn a_wrong_or_missing_secret_is_refused_on_either_side() {
        let s = secret("a cluster secret of some length");
        let other = secret("another secret, not the same one");
        let claim = (Role::Admin, None);
        assert!(handshake(Some(&other), Some(&s), claim).is_err());
        assert!(handshake(None, Some(&s), claim).is_err());
        // A server without the secret cannot pass itself off to one that has it.
        let err = handshake(Some(&s), None, claim).unwrap_err();
        assert!(err.contains("does not know"), "{err}");
    }

    #[test]
    fn a_proof_is_bound_to_the_claim_and_the_nonces() {
        let s = secret("a cluster secret of some length");
        let (o, a) = ([1u8; 16], [2u8; 16]);
        let proof = s.opener_proof(Role::Server, Some(ServerId(1)), &o, &a);
        assert!(s.check_opener((Role::Server, Some(ServerId(1))), &o, &a, &proof));
        assert!(!s.check_opener((Role::Server, Some(ServerId(2))), &o, &a, &proof));
        assert!(!s.check_opener((Role::Admin, Some(ServerId(1))), &o, &a, &proof));
        assert!(!s.check_opener((Role::Server, Some(ServerId(1))), &o, &[3u8; 16], &proof));
    }

    #[test]
    fn without_secrets_the_claim_is_taken_but_not_proven() {
        let peer = handshake(None, None, (Role::Server, Some(ServerId(2)))).unwrap();
        assert!(!peer.proven);
        assert_eq!(peer.server, Some(ServerId(2)));
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(Secret::new(b"short\n").is_err());
        assert!(Secret::new(b"sixteen bytes!!!\n").is_ok());
    }
}
