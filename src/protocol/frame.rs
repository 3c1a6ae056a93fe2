//! Framing and the connection handshake.
//!
//! [`encode_frame`] / [`decode_payload`] are pure and total; [`FramedReader`] and
//! [`FramedWriter`] put them on an async byte stream. A reader refuses a length above its cap
//! before allocating anything, so a hostile peer cannot make a server allocate 4 GiB.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{Envelope, MAGIC, VERSION};

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
    #[error("the peer closed the connection")]
    Closed,
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("undecodable frame: {0}")]
    Decode(String),
    #[error("the peer does not speak this protocol (got {0:02x?})")]
    BadHandshake([u8; 8]),
    #[error("the peer does not read its replies")]
    Overflow,
}

/// The eight handshake bytes.
pub fn hello() -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&MAGIC);
    b[4..].copy_from_slice(&VERSION.to_be_bytes());
    b
}

/// Sends our handshake and checks the peer's.
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
) -> Result<(), FrameError> {
    stream.write_all(&hello()).await?;
    stream.flush().await?;
    let mut theirs = [0u8; 8];
    stream.read_exact(&mut theirs).await.map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            FrameError::Closed
        } else {
            FrameError::Io(e)
        }
    })?;
    if theirs != hello() {
        return Err(FrameError::BadHandshake(theirs));
    }
    Ok(())
}

/// Length prefix and payload of one envelope.
pub fn encode_frame(env: &Envelope) -> Vec<u8> {
    // Serializing an in-memory envelope into a Vec cannot fail.
    let payload = postcard::to_allocvec(env).unwrap_or_default();
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Decodes a payload; never panics.
pub fn decode_payload(bytes: &[u8]) -> Result<Envelope, FrameError> {
    postcard::from_bytes(bytes).map_err(|e| FrameError::Decode(e.to_string()))
}

/// Reads envelopes from a byte stream.
pub struct FramedReader<R> {
    inner: R,
    max: usize,
}

impl<R: AsyncRead + Unpin> FramedReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        FramedReader { inner, max }
    }

    /// The next envelope; `Closed` at a clean end of stream.
    pub async fn read(&mut self) -> Result<Envelope, FrameError> {
        let mut len = [0u8; 4];
        match self.inner.read_exact(&mut len).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
            Err(e) => return Err(e.into()),
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > self.max {
            return Err(FrameError::TooLarge { len, max: self.max });
        }
        let mut buf = vec![0u8; len];
        self.inner.read_exact(&mut buf).await.map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                FrameError::Closed
            } else {
                FrameError::Io(e)
            }
        })?;
        decode_payload(&buf)
    }
}

/// Writes envelopes to a byte stream (flushing each, which the simulated network requires).
pub struct FramedWriter<W> {
    inner: W,
}

impl<W: AsyncWrite + Unpin> FramedWriter<W> {
    pub fn new(inner: W) -> Self {
        FramedWriter { inner }
    }

    pub async fn write(&mut self, env: &Envelope) -> io::Result<()> {
        self.inner.write_all(&encode_frame(env)).await?;
        self.inner.flush().await
    }

    /// Writes several envelopes with one flush.
    pub async fn write_all(&mut self, envs: &[Envelope]) -> io::Result<()> {
        let mut buf = Vec::new();
        for e in envs {
            buf.extend_from_slice(&encode_frame(e));
        }
        self.inner.write_all(&buf).await?;
        self.inner.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ClientRequest, Message, OpRequest};
    use hyperdex_model::{Operation, Value};
    use proptest::prelude::*;

    #[test]
    fn envelopes_round_trip() {
        let env = Envelope {
            id: 7,
            msg: Message::ToDaemon(ClientRequest::Op(OpRequest {
                config_version: 3,
                client: 9,
                seq: 1,
                low_seq: 1,
                op: Operation::put("s", "k", vec![("a", Value::Int(1))]),
            })),
        };
        let frame = encode_frame(&env);
        assert_eq!(
            u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize,
            frame.len() - 4
        );
        assert_eq!(decode_payload(&frame[4..]).unwrap(), env);
    }

    proptest! {
        #[test]
        fn decoding_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_payload(&bytes);
        }

        #[test]
        fn truncated_frames_are_errors(cut in 0usize..40) {
            let env = Envelope { id: 1, msg: Message::ToDaemon(ClientRequest::Op(OpRequest {
                config_version: 1, client: 2, seq: 3, low_seq: 3,
                op: Operation::put("space", "key", vec![("attr", Value::string("value"))]),
            }))};
            let frame = encode_frame(&env);
            let cut = cut.min(frame.len() - 5);
            prop_assert!(decode_payload(&frame[4..4 + cut]).is_err());
        }
    }
}
