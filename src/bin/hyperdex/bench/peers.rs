//! Minimal clients for the stores the benchmark compares against: Redis (RESP, `SET`/`GET`)
//! and etcd (its v3 JSON gateway, `/v3/kv/put` and `/v3/kv/range`). Each speaks just enough of
//! the protocol to store and read one value per key over one kept-alive connection; they exist
//! so that all three systems run the same workload shapes from the same load generator.

#![allow(clippy::disallowed_methods)] // benchmark-only code, outside the simulation

use std::io;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A peer store's connection.
pub enum Peer {
    Redis(BufReader<TcpStream>),
    Etcd(BufReader<TcpStream>, String),
}

fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (what etcd's JSON gateway expects for bytes).
pub fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl Peer {
    pub async fn redis(addr: &str) -> io::Result<Peer> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Peer::Redis(BufReader::new(s)))
    }

    pub async fn etcd(addr: &str) -> io::Result<Peer> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Peer::Etcd(BufReader::new(s), addr.to_string()))
    }

    pub async fn put(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        match self {
            Peer::Redis(s) => {
                let mut cmd = format!("*3\r\n$3\r\nSET\r\n${}\r\n", key.len()).into_bytes();
                cmd.extend_from_slice(key);
                cmd.extend_from_slice(format!("\r\n${}\r\n", value.len()).as_bytes());
                cmd.extend_from_slice(value);
                cmd.extend_from_slice(b"\r\n");
                s.get_mut().write_all(&cmd).await?;
                let mut line = String::new();
                s.read_line(&mut line).await?;
                if line.starts_with('+') {
                    Ok(())
                } else {
                    Err(bad(format!("redis answered {line:?}")))
                }
            }
            Peer::Etcd(s, host) => {
                let body = format!(
                    "{{\"key\":\"{}\",\"value\":\"{}\"}}",
                    base64(key),
                    base64(value)
                );
                http_post(s, host, "/v3/kv/put", &body).await.map(|_| ())
            }
        }
    }

    /// The value's length, or None when the key has none.
    pub async fn get(&mut self, key: &[u8]) -> io::Result<Option<usize>> {
        match self {
            Peer::Redis(s) => {
                let mut cmd = format!("*2\r\n$3\r\nGET\r\n${}\r\n", key.len()).into_bytes();
                cmd.extend_from_slice(key);
                cmd.extend_from_slice(b"\r\n");
                s.get_mut().write_all(&cmd).await?;
                let mut line = String::new();
                s.read_line(&mut line).await?;
                let len: i64 = line
                    .strip_prefix('$')
                    .and_then(|l| l.trim().parse().ok())
                    .ok_or_else(|| bad(format!("redis answered {line:?}")))?;
                if len < 0 {
                    return Ok(None);
                }
                let mut buf = vec![0u8; len as usize + 2];
                s.read_exact(&mut buf).await?;
                Ok(Some(len as usize))
            }
            Peer::Etcd(s, host) => {
                let body = format!("{{\"key\":\"{}\"}}", base64(key));
                let reply = http_post(s, host, "/v3/kv/range", &body).await?;
                Ok(reply.contains("\"kvs\"").then_some(reply.len()))
            }
        }
    }
}

impl Peer {
    /// Adds one to the decimal counter under `key` (missing: 0). Redis: `INCR`. etcd has no
    /// increment: read the value and its revision, write the new value if the revision is
    /// unchanged (a transaction), and start again if another client won.
    pub async fn incr(&mut self, key: &[u8]) -> io::Result<()> {
        match self {
            Peer::Redis(s) => {
                let mut cmd = format!("*2\r\n$4\r\nINCR\r\n${}\r\n", key.len()).into_bytes();
                cmd.extend_from_slice(key);
                cmd.extend_from_slice(b"\r\n");
                s.get_mut().write_all(&cmd).await?;
                let mut line = String::new();
                s.read_line(&mut line).await?;
                if line.starts_with(':') {
                    Ok(())
                } else {
                    Err(bad(format!("redis answered {line:?}")))
                }
            }
            Peer::Etcd(s, host) => loop {
                let k = base64(key);
                let reply =
                    http_post(s, host, "/v3/kv/range", &format!("{{\"key\":\"{k}\"}}")).await?;
                let revision = json_string(&reply, "mod_revision")
                    .unwrap_or("0")
                    .to_string();
                let n: u64 = json_string(&reply, "value")
                    .and_then(|v| STANDARD.decode(v).ok())
                    .and_then(|v| String::from_utf8(v).ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let txn = format!(
                    "{{\"compare\":[{{\"key\":\"{k}\",\"target\":\"MOD\",\"result\":\"EQUAL\",\
                     \"mod_revision\":\"{revision}\"}}],\"success\":[{{\"request_put\":{{\"key\":\"{k}\",\
                     \"value\":\"{}\"}}}}]}}",
                    base64((n + 1).to_string().as_bytes())
                );
                let answer = http_post(s, host, "/v3/kv/txn", &txn).await?;
                if answer.contains("\"succeeded\":true") {
                    return Ok(());
                }
            },
        }
    }
}

/// The string value of the first `"name":"..."` in a JSON text.
fn json_string<'a>(json: &'a str, name: &str) -> Option<&'a str> {
    let at = json.find(&format!("\"{name}\":\""))? + name.len() + 4;
    let len = json[at..].find('"')?;
    Some(&json[at..at + len])
}

/// One HTTP/1.1 POST on a kept-alive connection; returns the body.
async fn http_post(
    s: &mut BufReader<TcpStream>,
    host: &str,
    path: &str,
    body: &str,
) -> io::Result<String> {
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.get_mut().write_all(req.as_bytes()).await?;
    let mut status = String::new();
    s.read_line(&mut status).await?;
    if !status.contains(" 200 ") {
        return Err(bad(format!("etcd answered {status:?}")));
    }
    let mut length = None;
    loop {
        let mut header = String::new();
        s.read_line(&mut header).await?;
        let h = header.trim();
        if h.is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse::<usize>().ok();
        }
    }
    let length = length.ok_or_else(|| bad("etcd sent no content length"))?;
    let mut buf = vec![0u8; length];
    s.read_exact(&mut buf).await?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
