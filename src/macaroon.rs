//! Macaroons, compatible with libmacaroons (the library HyperDex's authorization uses): the
//! V1 format, HMAC-SHA256 signatures, third-party caveats sealed with XSalsa20-Poly1305, and
//! verification with discharge macaroons.
//!
//! Written here because the macaroon crates available refuse what HyperDex's own tutorial
//! does (an empty identifier). The construction, briefly (every value is 32 bytes):
//!
//! ```text
//! derive(key)            = HMAC("macaroons-key-generator", key)
//! create                 sig = HMAC(derive(key), identifier)
//! first-party caveat c   sig = HMAC(sig, c)
//! third-party (cl,k,cid) vid = nonce(24) || secretbox(key = sig, nonce, derive(k))
//!                        sig = HMAC(sig, HMAC(sig, vid) || HMAC(sig, cid))
//! bind(root, discharge)  = HMAC(0, HMAC(0, root.sig) || HMAC(0, discharge.sig))
//! ```
//!
//! V1 serialization: packets `HHHH key value\n` (`HHHH`: the packet's whole length in
//! lowercase hex) for location, identifier, each caveat's cid/vid/cl, and the signature;
//! the packets base64-encoded with the URL-safe alphabet and no padding. Reading accepts
//! either alphabet, padding or not, and whitespace. Verification follows libmacaroons: every
//! discharge whose identifier matches a caveat is tried and one success is enough; every
//! discharge must be bound to the top-level macaroon; a discharge may not appear on its own
//! ancestor chain; unused discharges are ignored.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::XSalsa20Poly1305;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type Sig = [u8; 32];

/// One caveat: a predicate (first-party), or an identifier with its sealed key and a
/// location (third-party).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caveat {
    pub cid: Vec<u8>,
    pub vid: Vec<u8>,
    pub cl: Vec<u8>,
}

/// A macaroon: a bearer token whose caveats restrict what it grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Macaroon {
    pub location: Vec<u8>,
    pub identifier: Vec<u8>,
    pub caveats: Vec<Caveat>,
    pub signature: Sig,
}

/// Why bytes are not a macaroon.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a macaroon: {0}")]
pub struct Invalid(String);

fn hmac(key: &[u8], parts: &[&[u8]]) -> Sig {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fn derive(key: &[u8]) -> Sig {
    hmac(b"macaroons-key-generator", &[key])
}

fn hash2(key: &[u8], a: &[u8], b: &[u8]) -> Sig {
    hmac(key, &[&hmac(key, &[a]), &hmac(key, &[b])])
}

fn bind(root: &Sig, discharge: &Sig) -> Sig {
    hash2(&[0u8; 32], root, discharge)
}

const NONCE: usize = 24;
const VID: usize = NONCE + 16 + 32;

impl Macaroon {
    /// A macaroon for `identifier` at `location`, signed with `key`.
    pub fn create(location: &[u8], key: &[u8], identifier: &[u8]) -> Macaroon {
        Macaroon {
            location: location.to_vec(),
            identifier: identifier.to_vec(),
            caveats: Vec::new(),
            signature: hmac(&derive(key), &[identifier]),
        }
    }

    pub fn add_first_party_caveat(&self, predicate: &[u8]) -> Macaroon {
        let mut m = self.clone();
        m.signature = hmac(&self.signature, &[predicate]);
        m.caveats.push(Caveat {
            cid: predicate.to_vec(),
            vid: Vec::new(),
            cl: Vec::new(),
        });
        m
    }

    /// A caveat that a discharge macaroon from `location`, minted with `key` for
    /// `identifier`, must satisfy. `nonce` must be random (it seals `key`).
    pub fn add_third_party_caveat(
        &self,
        location: &[u8],
        key: &[u8],
        identifier: &[u8],
        nonce: [u8; NONCE],
    ) -> Macaroon {
        let sealed = XSalsa20Poly1305::new((&self.signature).into())
            .encrypt((&nonce).into(), derive(key).as_slice())
            .unwrap_or_else(|_| unreachable!("sealing 32 bytes cannot fail"));
        let mut vid = nonce.to_vec();
        vid.extend(sealed);
        let mut m = self.clone();
        m.signature = hash2(&self.signature, &vid, identifier);
        m.caveats.push(Caveat {
            cid: identifier.to_vec(),
            vid,
            cl: location.to_vec(),
        });
        m
    }

    /// `discharge`, bound to this macaroon so that it can be sent with it.
    pub fn prepare_for_request(&self, discharge: &Macaroon) -> Macaroon {
        let mut d = discharge.clone();
        d.signature = bind(&self.signature, &discharge.signature);
        d
    }

    /// The (location, identifier) of each third-party caveat.
    pub fn third_party_caveats(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.caveats
            .iter()
            .filter(|c| !c.vid.is_empty() && !c.cl.is_empty())
            .map(|c| (c.cl.clone(), c.cid.clone()))
            .collect()
    }

    /// The V1 serialization (URL-safe base64 without padding).
    pub fn serialize(&self) -> String {
        let mut out = Vec::new();
        let mut packet = |key: &str, value: &[u8]| {
            let len = 4 + key.len() + 1 + value.len() + 1;
            out.extend(format!("{len:04x}").as_bytes());
            out.extend(key.as_bytes());
            out.push(b' ');
            out.extend(value);
            out.push(b'\n');
        };
        packet("location", &self.location);
        packet("identifier", &self.identifier);
        for c in &self.caveats {
            for (key, value) in [("cid", &c.cid), ("vid", &c.vid), ("cl", &c.cl)] {
                if !value.is_empty() {
                    packet(key, value);
                }
            }
        }
        packet("signature", &self.signature);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
    }

    /// Reads a V1 serialization (either base64 alphabet, padding optional, whitespace
    /// ignored).
    pub fn deserialize(text: &[u8]) -> Result<Macaroon, Invalid> {
        let bad = |why: &str| Invalid(why.to_string());
        let cleaned: Vec<u8> = text
            .iter()
            .filter(|b| !b.is_ascii_whitespace())
            .map(|&b| match b {
                b'+' => b'-',
                b'/' => b'_',
                b => b,
            })
            .collect();
        let lenient = GeneralPurpose::new(
            &alphabet::URL_SAFE,
            GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
        );
        let bytes = lenient
            .decode(&cleaned)
            .map_err(|e| Invalid(format!("bad base64: {e}")))?;
        let packets = packets(&bytes).ok_or_else(|| bad("malformed packets"))?;
        let mut it = packets.into_iter().peekable();
        let location = take(&mut it, "location").ok_or_else(|| bad("no location"))?;
        let identifier = take(&mut it, "identifier").ok_or_else(|| bad("no identifier"))?;
        let mut caveats: Vec<Caveat> = Vec::new();
        while let Some((key, value)) = it.next_if(|(k, _)| matches!(*k, b"cid" | b"vid" | b"cl")) {
            match key {
                b"cid" => caveats.push(Caveat {
                    cid: value.to_vec(),
                    vid: Vec::new(),
                    cl: Vec::new(),
                }),
                b"vid" => match caveats.last_mut() {
                    Some(c) if c.vid.is_empty() => c.vid = value.to_vec(),
                    _ => return Err(bad("a vid without its cid")),
                },
                _ => match caveats.last_mut() {
                    Some(c) if c.cl.is_empty() => c.cl = value.to_vec(),
                    _ => return Err(bad("a cl without its cid")),
                },
            }
        }
        let signature = take(&mut it, "signature")
            .and_then(|s| Sig::try_from(s).ok())
            .ok_or_else(|| bad("no 32-byte signature"))?;
        Ok(Macaroon {
            location: location.to_vec(),
            identifier: identifier.to_vec(),
            caveats,
            signature,
        })
    }
}

/// The decoded packets, as (key, value), if the bytes split exactly into packets.
fn packets(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let header = std::str::from_utf8(rest.get(..4)?).ok()?;
        if header.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let len = usize::from_str_radix(header, 16).ok()?;
        if len < 6 || len > rest.len() || rest[len - 1] != b'\n' {
            return None;
        }
        let body = &rest[4..len - 1];
        let space = body.iter().position(|&b| b == b' ')?;
        out.push((&body[..space], &body[space + 1..]));
        rest = &rest[len..];
    }
    Some(out)
}

fn take<'a>(
    it: &mut std::iter::Peekable<std::vec::IntoIter<(&'a [u8], &'a [u8])>>,
    key: &str,
) -> Option<&'a [u8]> {
    it.next_if(|(k, _)| *k == key.as_bytes()).map(|(_, v)| v)
}

/// A check of a first-party caveat's predicate.
type Check<'a> = Box<dyn Fn(&[u8]) -> bool + 'a>;

/// What a verifier accepts of first-party caveats: exact predicates, and general checks.
#[derive(Default)]
pub struct Verifier<'a> {
    exact: Vec<Vec<u8>>,
    general: Vec<Check<'a>>,
}

impl<'a> Verifier<'a> {
    pub fn satisfy_exact(&mut self, predicate: &[u8]) {
        self.exact.push(predicate.to_vec());
    }

    pub fn satisfy_general(&mut self, check: impl Fn(&[u8]) -> bool + 'a) {
        self.general.push(Box::new(check));
    }

    fn satisfied(&self, predicate: &[u8]) -> bool {
        self.exact.iter().any(|p| p == predicate) || self.general.iter().any(|g| g(predicate))
    }

    /// Whether `m`, with the (bound) `discharges`, is authorized under `key`.
    pub fn verify(&self, m: &Macaroon, key: &[u8], discharges: &[Macaroon]) -> bool {
        let mut chain = Vec::new();
        self.verify_inner(m, m, &derive(key), discharges, &mut chain)
    }

    fn verify_inner(
        &self,
        n: &Macaroon,
        top: &Macaroon,
        key: &Sig,
        ms: &[Macaroon],
        chain: &mut Vec<usize>,
    ) -> bool {
        if chain.len() > ms.len() {
            return false;
        }
        let mut sig = hmac(key, &[&n.identifier]);
        for c in &n.caveats {
            if c.vid.is_empty() {
                if !self.satisfied(&c.cid) {
                    return false;
                }
                sig = hmac(&sig, &[&c.cid]);
            } else {
                if !self.third_party(c, &sig, top, ms, chain) {
                    return false;
                }
                sig = hash2(&sig, &c.vid, &c.cid);
            }
        }
        if !chain.is_empty() {
            sig = bind(&top.signature, &sig);
        }
        constant_time_eq(&sig, &n.signature)
    }

    fn third_party(
        &self,
        c: &Caveat,
        sig: &Sig,
        top: &Macaroon,
        ms: &[Macaroon],
        chain: &mut Vec<usize>,
    ) -> bool {
        if c.vid.len() != VID {
            return false;
        }
        let (nonce, sealed) = c.vid.split_at(NONCE);
        let Ok(key) = XSalsa20Poly1305::new(sig.into()).decrypt(nonce.into(), sealed) else {
            return false;
        };
        let Ok(key) = Sig::try_from(key.as_slice()) else {
            return false;
        };
        let mut any = false;
        for (i, d) in ms.iter().enumerate() {
            if d.identifier != c.cid || chain.contains(&i) {
                continue;
            }
            chain.push(i);
            any |= self.verify_inner(d, top, &key, ms, chain);
            chain.pop();
        }
        any
    }
}

fn constant_time_eq(a: &Sig, b: &Sig) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &Sig) -> String {
        s.iter().map(|b| format!("{b:02x}")).collect()
    }

    const KEY: &[u8] = b"this is the key";

    #[test]
    fn the_reference_serializations_and_signatures() {
        let m = Macaroon::create(b"http://example.org/", KEY, b"keyid");
        assert_eq!(
            hex(&m.signature),
            "7cdee792511c5bc6f528485805dfe9b24e785e28e2a99301f9d711c609e38ef7"
        );
        assert_eq!(m.serialize(), "MDAyMWxvY2F0aW9uIGh0dHA6Ly9leGFtcGxlLm9yZy8KMDAxNWlkZW50aWZpZXIga2V5aWQKMDAyZnNpZ25hdHVyZSB83ueSURxbxvUoSFgF3-myTnheKOKpkwH51xHGCeOO9wo");
        let m = m
            .add_first_party_caveat(b"account = 3735928559")
            .add_first_party_caveat(b"user = alice");
        assert_eq!(
            hex(&m.signature),
            "4be967cd1ea0c6b26baf6a4a94ee9b05b15886da0ba85e8c42a93c8d0e125efc"
        );
        assert_eq!(m.serialize(), "MDAyMWxvY2F0aW9uIGh0dHA6Ly9leGFtcGxlLm9yZy8KMDAxNWlkZW50aWZpZXIga2V5aWQKMDAxZGNpZCBhY2NvdW50ID0gMzczNTkyODU1OQowMDE1Y2lkIHVzZXIgPSBhbGljZQowMDJmc2lnbmF0dXJlIEvpZ80eoMaya69qSpTumwWxWIbaC6hejEKpPI0OEl78Cg");
        assert_eq!(Macaroon::deserialize(m.serialize().as_bytes()), Ok(m));
    }

    #[test]
    fn first_party_caveats_are_checked() {
        let m = Macaroon::create(b"http://example.org/", KEY, b"keyid")
            .add_first_party_caveat(b"account = 3735928559");
        let mut v = Verifier::default();
        assert!(!v.verify(&m, KEY, &[]), "no predicate satisfied");
        v.satisfy_exact(b"account = 0000000000");
        assert!(!v.verify(&m, KEY, &[]));
        v.satisfy_exact(b"account = 3735928559");
        assert!(v.verify(&m, KEY, &[]));
        assert!(!v.verify(&m, b"this is not the key", &[]));
    }

    #[test]
    fn the_reference_third_party_caveat_and_its_discharge() {
        let secret = b"this is a different super-secret key; never use the same secret twice";
        let caveat_key = b"4; guaranteed random by a fair toss of the dice";
        let cid = b"this was how we remind auth of key/pred";
        let m = Macaroon::create(b"http://mybank/", secret, b"we used our other secret key")
            .add_first_party_caveat(b"account = 3735928559")
            .add_third_party_caveat(b"http://auth.mybank/", caveat_key, cid, [0; 24]);
        assert_eq!(
            hex(&m.signature),
            "d27db2fd1f22760e4c3dae8137e2d8fc1df6c0741c18aed4b97256bf78d1f55c"
        );
        assert_eq!(m.serialize(), "MDAxY2xvY2F0aW9uIGh0dHA6Ly9teWJhbmsvCjAwMmNpZGVudGlmaWVyIHdlIHVzZWQgb3VyIG90aGVyIHNlY3JldCBrZXkKMDAxZGNpZCBhY2NvdW50ID0gMzczNTkyODU1OQowMDMwY2lkIHRoaXMgd2FzIGhvdyB3ZSByZW1pbmQgYXV0aCBvZiBrZXkvcHJlZAowMDUxdmlkIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAANNuxQLgWIbR8CefBV-lJVTRbRbBsUB0u7g_8P3XncL-CY8O1KKwkRMOa120aiCoawowMDFiY2wgaHR0cDovL2F1dGgubXliYW5rLwowMDJmc2lnbmF0dXJlINJ9sv0fInYOTD2ugTfi2Pwd9sB0HBiu1LlyVr940fVcCg");
        let d = Macaroon::create(b"http://auth.mybank/", caveat_key, cid)
            .add_first_party_caveat(b"time < 2020-01-01T00:00");
        let dp = m.prepare_for_request(&d);
        assert_eq!(
            hex(&dp.signature),
            "d115ef1c133b1126978d5ab27f69d99ba9d0468cd6c1b7e47b8c1c59019cb019"
        );
        let mut v = Verifier::default();
        v.satisfy_exact(b"account = 3735928559");
        v.satisfy_general(|p| p.starts_with(b"time < "));
        assert!(v.verify(&m, secret, std::slice::from_ref(&dp)));
        assert!(!v.verify(&m, secret, &[d]), "an unbound discharge");
        assert!(!v.verify(&m, secret, &[]), "no discharge");
    }

    #[test]
    fn lenient_reading_of_the_standard_alphabet_padding_and_newlines() {
        let text = "MDAxY2xvY2F0aW9uIGh0dHA6Ly9teWJhbmsvCjAwMjZpZGVudGlmaWVyIHdlIHVzZWQgb3VyIHNl\nY3JldCBrZXkKMDAxZGNpZCBhY2NvdW50ID0gMzczNTkyODU1OQowMDIwY2lkIHRpbWUgPCAyMDIw\nLTAxLTAxVDAwOjAwCjAwMjJjaWQgZW1haWwgPSBhbGljZUBleGFtcGxlLm9yZwowMDJmc2lnbmF0\ndXJlID8f19FL+bkC9p/aoMmIecC7GxdOcLVyUnrv6lJMM7NSCg==\n";
        let m = Macaroon::deserialize(text.as_bytes()).expect("accepted");
        assert_eq!(m.caveats.len(), 3);
        assert!(Macaroon::deserialize(b"not a macaroon at all").is_err());
        assert!(Macaroon::deserialize(b"").is_err());
    }

    #[test]
    fn an_empty_identifier_is_a_macaroon_like_any_other() {
        let m = Macaroon::create(b"account 3735928559", b"password", b"");
        let back = Macaroon::deserialize(m.serialize().as_bytes()).expect("reads back");
        assert!(Verifier::default().verify(&back, b"password", &[]));
    }
}
