//! Framing and the connection handshake.
//!
//! [`encode_frame`] / [`decode_payload`] are pure and total; [`FramedReader`] and
//! [`FramedWriter`] put them on an async byte stream. A reader refuses a length above its cap
//! before reading anything more, and grows its buffer only as the payload's bytes arrive, so a
//! peer that announces 16 MiB and sends nothing costs nothing. Decoding is bounded: values
//! nest at most `MAX_NESTING` levels (see `hyperdex_model::value`), documents 128 (serde_json's
//! limit). A sender refuses to encode a frame the receiver would refuse.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use super::{Envelope, ENCODE_CAPACITY, MAGIC, VERSION};

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
    #[error("cannot encode the message: {0}")]
    Encode(String),
    #[error("no frame within {0:?}")]
    Idle(std::time::Duration),
    #[error("a frame was started but not finished within {0:?}")]
    Stalled(std::time::Duration),
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

/// Length prefix and payload of one envelope, if a receiver with frame cap `max` would
/// accept it.
pub fn encode_frame(env: &Envelope, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::with_capacity(ENCODE_CAPACITY);
    out.extend_from_slice(&[0u8; 4]);
    let mut out = postcard::to_extend(env, out).map_err(|e| FrameError::Encode(e.to_string()))?;
    let len = out.len() - 4;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    out[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(out)
}

/// Decodes a payload; never panics.
pub fn decode_payload(bytes: &[u8]) -> Result<Envelope, FrameError> {
    postcard::from_bytes(bytes).map_err(|e| FrameError::Decode(e.to_string()))
}

/// The most a reader allocates for a frame before its bytes arrive.
const INITIAL_BUFFER: usize = 4 << 10;

/// How many bytes a reader takes from the stream at once: the frames that arrived together
/// (replies queued behind each other, a client's pipelined requests) are read by one call.
/// Every connection holds this much from its start, idle or not.
const READ_BUFFER: usize = 4 << 10;

/// Reads envelopes from a byte stream, through a buffer of 4 KiB (`READ_BUFFER`).
pub struct FramedReader<R> {
    inner: BufReader<R>,
    max: usize,
}

impl<R: AsyncRead + Unpin> FramedReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        FramedReader {
            inner: BufReader::with_capacity(READ_BUFFER, inner),
            max,
        }
    }

    /// The next envelope; `Closed` at a clean end of stream.
    pub async fn read(&mut self) -> Result<Envelope, FrameError> {
        let len = self.read_len().await?;
        self.read_body(len).await
    }

    /// The next frame's length (the reader waits here between frames).
    pub async fn read_len(&mut self) -> Result<usize, FrameError> {
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
        Ok(len)
    }

    /// The payload of a frame of `len` bytes (at most the cap), decoded. The buffer grows as
    /// bytes arrive.
    pub async fn read_body(&mut self, len: usize) -> Result<Envelope, FrameError> {
        // Most frames arrived whole with the bytes before them: decode them where they are.
        if let Some(whole) = self.inner.buffer().get(..len) {
            let env = decode_payload(whole);
            self.inner.consume(len);
            return env;
        }
        let mut buf = Vec::with_capacity(len.min(INITIAL_BUFFER));
        (&mut self.inner)
            .take(len as u64)
            .read_to_end(&mut buf)
            .await?;
        if buf.len() < len {
            return Err(FrameError::Closed);
        }
        decode_payload(&buf)
    }
}

/// Writes encoded frames to a byte stream (flushing each batch, which the simulated network
/// requires).
pub struct FramedWriter<W> {
    inner: W,
    /// Where the frames of a batch are put together, kept between batches (up to
    /// [`WRITE_BUFFER`] bytes).
    joined: Vec<u8>,
}

/// The most bytes a peer must take within a writer's patience (so a large batch on a slow
/// link is not taken for a peer that does not read).
pub const WRITE_SLICE: usize = 1 << 20;

/// `io`, or `TimedOut` if it takes longer than `patience`.
async fn within<T>(
    patience: Duration,
    io: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    crate::rt::timeout(patience, io).await.unwrap_or_else(|| {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the peer did not take what was written within {patience:?}"),
        ))
    })
}

/// The most a writer keeps allocated between batches for putting frames together (as much
/// as a reader's buffer: an idle connection holds little).
const WRITE_BUFFER: usize = 4 << 10;

impl<W: AsyncWrite + Unpin> FramedWriter<W> {
    pub fn new(inner: W) -> Self {
        FramedWriter {
            inner,
            joined: Vec::new(),
        }
    }

    /// Writes several frames (from [`encode_frame`]) with one flush, joined first when there
    /// are several; each slice of [`WRITE_SLICE`] bytes, and the flush, must be taken by the
    /// peer within `patience` (else `TimedOut`: a peer that does not take a slice in that
    /// long is taken for one that does not read).
    pub async fn write_all(&mut self, frames: &[Vec<u8>], patience: Duration) -> io::Result<()> {
        let bytes: &[u8] = match frames {
            [frame] => frame,
            _ => {
                self.joined.clear();
                for f in frames {
                    self.joined.extend_from_slice(f);
                }
                &self.joined
            }
        };
        for slice in bytes.chunks(WRITE_SLICE) {
            within(patience, self.inner.write_all(slice)).await?;
        }
        if self.joined.capacity() > WRITE_BUFFER {
            self.joined = Vec::new();
        }
        within(patience, self.inner.flush()).await
    }

    /// Ends the writing side, within `patience`: the peer reads the end of the stream once
    /// what was written.
    pub async fn shutdown(&mut self, patience: Duration) -> io::Result<()> {
        within(patience, self.inner.shutdown()).await
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
                auth: Vec::new(),
                first_unix: 1_700_000_000,
            })),
        };
        let frame = encode_frame(&env, crate::protocol::DEFAULT_MAX_FRAME).unwrap();
        assert_eq!(
            u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize,
            frame.len() - 4
        );
        assert_eq!(decode_payload(&frame[4..]).unwrap(), env);
    }

    /// A frame's payload with one of the mutations a hostile or broken peer produces.
    fn mutated(payload: &[u8], kind: u8, at: usize, byte: u8, depth: usize) -> Vec<u8> {
        let mut p = payload.to_vec();
        let at = at % p.len().max(1);
        match kind % 5 {
            0 => {
                if let Some(b) = p.get_mut(at) {
                    *b ^= 1 << (byte % 8);
                }
            }
            1 => p.truncate(at),
            2 => {
                if let Some(b) = p.get_mut(at) {
                    *b = byte;
                }
            }
            // Lists nested `depth` deep spliced in: a stack-overflow attempt.
            3 => {
                let nest = [5u8, 1].repeat(depth);
                p.splice(at..at, nest);
            }
            // A huge length or count where one may be expected.
            _ => {
                p.splice(at..at, [0xff, 0xff, 0xff, 0xff, 0x0f]);
            }
        }
        p
    }

    proptest! {
        #[test]
        fn mutated_real_frames_decode_or_fail_cleanly(
            which in 0usize..64,
            kind in 0u8..5,
            at in 0usize..4096,
            byte in any::<u8>(),
            depth in 1usize..200_000,
        ) {
            let envs = crate::protocol::samples::sample_envelopes();
            let env = &envs[which % envs.len()];
            let frame = encode_frame(env, crate::protocol::DEFAULT_MAX_FRAME).unwrap();
            let payload = mutated(&frame[4..], kind, at, byte, depth);
            if let Ok(decoded) = decode_payload(&payload) {
                // Whatever decodes encodes again: nothing decodable is unsendable.
                prop_assert!(encode_frame(&decoded, crate::protocol::DEFAULT_MAX_FRAME).is_ok());
            }
        }
    }

    #[test]
    fn every_sample_round_trips() {
        for env in crate::protocol::samples::sample_envelopes() {
            let frame = encode_frame(&env, crate::protocol::DEFAULT_MAX_FRAME).unwrap();
            assert_eq!(decode_payload(&frame[4..]).unwrap(), env);
        }
    }

    #[test]
    fn a_frame_over_the_receivers_cap_is_refused_by_the_sender() {
        let env = Envelope {
            id: 1,
            msg: Message::Error {
                code: hyperdex_model::ReturnCode::Garbage,
                message: "x".repeat(2000),
            },
        };
        assert!(matches!(
            encode_frame(&env, 1000),
            Err(FrameError::TooLarge { max: 1000, .. })
        ));
    }

    #[cfg(not(madsim))]
    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// Frames of the given message sizes, written in batches of `batch` through a
    /// [`FramedWriter`] into a pipe that carries `pipe` bytes at a time, read back by a
    /// [`FramedReader`]: what is read is what was written.
    #[cfg(not(madsim))]
    fn through_a_pipe(sizes: &[usize], batch: usize, pipe: usize) {
        let envs: Vec<Envelope> = sizes
            .iter()
            .enumerate()
            .map(|(i, n)| Envelope {
                id: i as u64,
                msg: Message::Error {
                    code: hyperdex_model::ReturnCode::Garbage,
                    message: "m".repeat(*n),
                },
            })
            .collect();
        let read = block_on(async {
            let (a, b) = tokio::io::duplex(pipe);
            let frames: Vec<Vec<u8>> = envs
                .iter()
                .map(|e| encode_frame(e, 1 << 20).unwrap())
                .collect();
            let writing = async move {
                let mut w = FramedWriter::new(a);
                for chunk in frames.chunks(batch) {
                    w.write_all(chunk, Duration::from_secs(10)).await.unwrap();
                }
            };
            let reading = async move {
                let mut r = FramedReader::new(b, 1 << 20);
                let mut out = Vec::new();
                while let Ok(env) = r.read().await {
                    out.push(env);
                }
                out
            };
            tokio::join!(writing, reading).1
        });
        assert_eq!(read, envs);
    }

    /// Writes 4 MiB through a pipe of 64 KiB whose reader takes 64 KiB every `every` (never,
    /// if `None`), with a patience of `patience`.
    #[cfg(not(madsim))]
    fn write_to_a_reader(every: Option<Duration>, patience: Duration) -> io::Result<()> {
        block_on(async {
            let (a, mut b) = tokio::io::duplex(64 << 10);
            let reading = async move {
                let Some(every) = every else {
                    return std::future::pending().await;
                };
                let mut buf = vec![0u8; 64 << 10];
                while b.read(&mut buf).await.is_ok_and(|n| n > 0) {
                    tokio::time::sleep(every).await;
                }
            };
            let writing = async move {
                let mut w = FramedWriter::new(a);
                w.write_all(&[vec![7u8; 4 << 20]], patience).await
            };
            tokio::select! {
                biased;
                written = writing => written,
                () = reading => unreachable!("the writer holds the pipe open"),
            }
        })
    }

    #[cfg(not(madsim))]
    #[test]
    fn a_peer_that_takes_nothing_times_the_writer_out_and_a_slow_one_does_not() {
        let stuck = write_to_a_reader(None, Duration::from_millis(200));
        assert_eq!(stuck.unwrap_err().kind(), io::ErrorKind::TimedOut);
        // 1 MiB in about 320 ms, 4 MiB in about 1.3 s: longer than the patience, which each
        // slice of 1 MiB is given afresh.
        let slow = write_to_a_reader(Some(Duration::from_millis(20)), Duration::from_secs(1));
        assert!(slow.is_ok(), "{slow:?}");
    }

    #[cfg(not(madsim))]
    #[test]
    fn frames_that_do_not_decode_are_errors_and_the_next_frame_still_reads() {
        let env = Envelope {
            id: 9,
            msg: Message::Error {
                code: hyperdex_model::ReturnCode::Garbage,
                message: "after".into(),
            },
        };
        // An empty frame, a frame of three bytes that decode to nothing, then a real one.
        let mut bytes = vec![0, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff];
        bytes.extend(encode_frame(&env, 1 << 20).unwrap());
        block_on(async {
            let mut r = FramedReader::new(&bytes[..], 1 << 20);
            assert!(matches!(r.read().await, Err(FrameError::Decode(_))));
            assert!(matches!(r.read().await, Err(FrameError::Decode(_))));
            assert_eq!(r.read().await.unwrap(), env);
            assert!(matches!(r.read().await, Err(FrameError::Closed)));
        });
    }

    #[cfg(not(madsim))]
    proptest! {
        #[test]
        fn frames_written_in_batches_are_read_back_whole(
            sizes in prop::collection::vec(0usize..10_000, 1..20),
            batch in 1usize..5,
            pipe in prop::sample::select(vec![7usize, 100, 4096, 1 << 16]),
        ) {
            through_a_pipe(&sizes, batch, pipe);
        }
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
                auth: Vec::new(),
                first_unix: 1_700_000_000,
            }))};
            let frame = encode_frame(&env, 1 << 20).unwrap();
            let cut = cut.min(frame.len() - 5);
            prop_assert!(decode_payload(&frame[4..4 + cut]).is_err());
        }
    }
}
