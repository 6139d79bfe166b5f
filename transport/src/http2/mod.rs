//! [`Http2Guard`]: reads the client's half of an HTTP/2 connection frame
//! by frame before the server (`h2`, under tonic) sees it.
//!
//! It does two things, each optional:
//!
//! - **`:authority` repair** (Unix sockets). gRPC clients other than
//!   grpc-go and tonic send the socket path as `:authority` on a Unix
//!   socket: C-core (Python, Ruby, C++) percent-encoded, grpc-java the raw
//!   path. `h2` refuses any `:authority` that `http::uri::Authority` does
//!   not parse and resets the stream before the service runs. The guard
//!   decodes every header block (HPACK, keeping the client's dynamic
//!   table), replaces an `:authority` that `http` would refuse with
//!   `localhost`, and writes the block again without the dynamic table
//!   (static indexes and literals only), so the server's decoder never
//!   holds state the client's encoder does not know about. On a Unix
//!   socket the caller is identified by `SO_PEERCRED`; `:authority`
//!   carries no meaning there. Absent stays absent; a valid one is kept.
//! - **First-request deadline**: a connection that has not sent a whole
//!   request header block within the deadline is closed, so a client that
//!   opens connections and stays silent (or sends only the preface) does
//!   not keep them.
//!
//! Every other frame passes through unchanged and unbuffered; the
//! server's writes are not touched. Bounds: a header block frame of at
//! most [`MAX_FRAME_SIZE`] (the HTTP/2 default the server advertises), a
//! decoded header list of at most [`MAX_HEADER_LIST_SIZE`]; a client
//! beyond them, or sending a malformed block, loses the connection (an
//! I/O error to the server, which closes it), as `h2` itself would with
//! a connection error.

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::hpack::{self, Decoder, Field};

/// The client connection preface (RFC 9113, 3.4).
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// The largest header block frame accepted from the client: the HTTP/2
/// default `SETTINGS_MAX_FRAME_SIZE`, which the servers keep.
pub const MAX_FRAME_SIZE: usize = 16_384;
/// The largest decoded header list accepted (name + value + 32 per field,
/// as `SETTINGS_MAX_HEADER_LIST_SIZE` counts). gRPC clients default to
/// 8-16 KiB of metadata.
pub const MAX_HEADER_LIST_SIZE: usize = 64 * 1024;
/// The largest compressed header block (Huffman may expand a byte to up to
/// 30 bits, so a block within the list limit fits in this).
const MAX_BLOCK_SIZE: usize = 4 * MAX_HEADER_LIST_SIZE;
/// The dynamic table size the server advertises (the HTTP/2 default; the
/// servers do not change it).
const HEADER_TABLE_SIZE: usize = 4096;
/// How much one read from the client takes (into the stack).
const READ_CHUNK: usize = 8192;
/// What replaces an `:authority` the server would refuse.
pub const REPLACEMENT_AUTHORITY: &str = "localhost";

/// What the guard does on one connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct GuardOptions {
    /// Replace an `:authority` that `http::uri::Authority` refuses.
    pub repair_authority: bool,
    /// Close the connection if no request header block arrives in time.
    pub first_request_deadline: Option<Duration>,
}

/// An HTTP/2 server-side connection whose client frames are checked (and
/// on Unix sockets repaired) before the server reads them. See the
/// module documentation.
#[derive(Debug)]
pub struct Http2Guard<IO> {
    io: IO,
    options: GuardOptions,
    state: State,
    /// Bytes read from the client, not yet processed.
    input: BytesMut,
    /// Bytes processed, for the server to read.
    output: BytesMut,
    decoder: Option<Decoder>,
    pending: Option<PendingBlock>,
    deadline: Option<Pin<Box<Sleep>>>,
    requests: u64,
    eof: bool,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Preface(usize),
    FrameHeader,
    /// Passing through the rest of a frame's payload.
    Payload(usize),
}

#[derive(Debug)]
struct PendingBlock {
    stream_id: u32,
    flags: u8,
    priority: Option<[u8; 5]>,
    fragment: BytesMut,
}

impl<IO> Http2Guard<IO> {
    /// Guards `io`, a connection whose first bytes are the client preface.
    pub fn new(io: IO, options: GuardOptions) -> Self {
        Http2Guard {
            io,
            options,
            state: State::Preface(PREFACE_LEN),
            input: BytesMut::new(),
            output: BytesMut::new(),
            decoder: None,
            pending: None,
            deadline: options
                .first_request_deadline
                .map(|d| Box::pin(tokio::time::sleep(d))),
            requests: 0,
            eof: false,
        }
    }

    /// The connection underneath.
    pub fn get_ref(&self) -> &IO {
        &self.io
    }

    /// How many request header blocks (HEADERS frames, trailers included)
    /// the client has sent.
    pub fn header_blocks(&self) -> u64 {
        self.requests
    }

    /// Moves what can be moved from `input` to `output`.
    fn process(&mut self) -> io::Result<()> {
        loop {
            match self.state {
                State::Preface(left) | State::Payload(left) => {
                    let n = left.min(self.input.len());
                    if n == 0 && left > 0 {
                        return Ok(());
                    }
                    self.output.extend_from_slice(&self.input[..n]);
                    self.input.advance(n);
                    self.state = if left == n {
                        State::FrameHeader
                    } else if matches!(self.state, State::Preface(_)) {
                        State::Preface(left - n)
                    } else {
                        State::Payload(left - n)
                    };
                    if left > n {
                        return Ok(());
                    }
                }
                State::FrameHeader => {
                    if self.input.len() < FRAME_HEADER_LEN {
                        return Ok(());
                    }
                    let h = &self.input[..FRAME_HEADER_LEN];
                    let len =
                        (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
                    let kind = h[3];
                    let flags = h[4];
                    let stream_id = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                    if kind == HEADERS || kind == CONTINUATION {
                        if len > MAX_FRAME_SIZE {
                            return Err(invalid(format!(
                                "header block frame of {len} bytes exceeds {MAX_FRAME_SIZE}"
                            )));
                        }
                        if self.input.len() < FRAME_HEADER_LEN + len {
                            self.input
                                .reserve(FRAME_HEADER_LEN + len - self.input.len());
                            return Ok(());
                        }
                        self.input.advance(FRAME_HEADER_LEN);
                        let payload = self.input.split_to(len);
                        self.header_frame(kind, flags, stream_id, &payload)?;
                    } else {
                        if self.pending.is_some() {
                            return Err(invalid(
                                "a frame other than CONTINUATION inside a header block".into(),
                            ));
                        }
                        self.output
                            .extend_from_slice(&self.input[..FRAME_HEADER_LEN]);
                        self.input.advance(FRAME_HEADER_LEN);
                        self.state = State::Payload(len);
                    }
                }
            }
        }
    }

    fn header_frame(
        &mut self,
        kind: u8,
        flags: u8,
        stream_id: u32,
        payload: &[u8],
    ) -> io::Result<()> {
        if kind == HEADERS {
            if self.pending.is_some() {
                return Err(invalid("HEADERS inside a header block".into()));
            }
            let mut data = payload;
            if flags & PADDED != 0 {
                let (&pad, rest) = data
                    .split_first()
                    .ok_or_else(|| invalid("padded HEADERS without a pad length".into()))?;
                let keep = rest
                    .len()
                    .checked_sub(usize::from(pad))
                    .ok_or_else(|| invalid("HEADERS padding longer than the frame".into()))?;
                data = &rest[..keep];
            }
            let priority = if flags & PRIORITY != 0 {
                if data.len() < 5 {
                    return Err(invalid("HEADERS priority fields truncated".into()));
                }
                let (p, rest) = data.split_at(5);
                data = rest;
                let mut fields = [0u8; 5];
                fields.copy_from_slice(p);
                Some(fields)
            } else {
                None
            };
            self.pending = Some(PendingBlock {
                stream_id,
                flags,
                priority,
                fragment: BytesMut::from(data),
            });
        } else {
            let pending = self
                .pending
                .as_mut()
                .filter(|p| p.stream_id == stream_id)
                .ok_or_else(|| invalid("CONTINUATION without its HEADERS".into()))?;
            if pending.fragment.len() + payload.len() > MAX_BLOCK_SIZE {
                return Err(invalid(format!(
                    "header block exceeds {MAX_BLOCK_SIZE} bytes"
                )));
            }
            pending.fragment.extend_from_slice(payload);
        }
        if flags & END_HEADERS != 0 {
            if let Some(block) = self.pending.take() {
                self.finish(block)?;
            }
        }
        Ok(())
    }

    /// A complete header block: decode, repair, encode, frame.
    fn finish(&mut self, block: PendingBlock) -> io::Result<()> {
        self.requests += 1;
        self.deadline = None;
        if !self.options.repair_authority {
            // Pass the block on as it came, in one HEADERS frame when it
            // fits, else split.
            return self.emit(&block, &block.fragment);
        }
        let decoder = self
            .decoder
            .get_or_insert_with(|| Decoder::new(HEADER_TABLE_SIZE, MAX_HEADER_LIST_SIZE));
        let mut fields = decoder
            .decode(&block.fragment)
            .map_err(|e| invalid(e.to_string()))?;
        repair_authority(&mut fields);
        let mut encoded = Vec::with_capacity(block.fragment.len() + 64);
        hpack::encode(&fields, &mut encoded);
        self.emit(&block, &encoded)
    }

    /// Writes `block` as HEADERS (+ CONTINUATION) frames of at most
    /// [`MAX_FRAME_SIZE`], keeping END_STREAM and the priority fields.
    fn emit(&mut self, block: &PendingBlock, encoded: &[u8]) -> io::Result<()> {
        let priority_len = if block.priority.is_some() { 5 } else { 0 };
        let first_room = MAX_FRAME_SIZE - priority_len;
        let (first, mut rest) = encoded.split_at(encoded.len().min(first_room));
        let mut flags = block.flags & END_STREAM;
        if block.priority.is_some() {
            flags |= PRIORITY;
        }
        if rest.is_empty() {
            flags |= END_HEADERS;
        }
        self.frame_header(priority_len + first.len(), HEADERS, flags, block.stream_id);
        if let Some(p) = block.priority {
            self.output.extend_from_slice(&p);
        }
        self.output.extend_from_slice(first);
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(rest.len().min(MAX_FRAME_SIZE));
            rest = tail;
            let flags = if rest.is_empty() { END_HEADERS } else { 0 };
            self.frame_header(chunk.len(), CONTINUATION, flags, block.stream_id);
            self.output.extend_from_slice(chunk);
        }
        Ok(())
    }

    fn frame_header(&mut self, len: usize, kind: u8, flags: u8, stream_id: u32) {
        self.output.put_uint(len as u64, 3);
        self.output.put_u8(kind);
        self.output.put_u8(flags);
        self.output.put_u32(stream_id);
    }
}

/// Replaces an `:authority` value that `h2` would refuse.
fn repair_authority(fields: &mut [Field]) {
    for field in fields.iter_mut().filter(|f| f.name == b":authority") {
        if http::uri::Authority::try_from(field.value.as_slice()).is_err() {
            field.value = REPLACEMENT_AUTHORITY.as_bytes().to_vec();
        }
    }
}

fn invalid(reason: String) -> io::Error {
    tracing::debug!(%reason, "closing an HTTP/2 connection: malformed client frames");
    io::Error::new(io::ErrorKind::InvalidData, reason)
}

impl<IO: AsyncRead + Unpin> AsyncRead for Http2Guard<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.output.is_empty() {
                let n = this.output.len().min(buf.remaining());
                buf.put_slice(&this.output[..n]);
                if n == this.output.len() {
                    // Drained: let the allocation go rather than keep it
                    // for the life of the connection.
                    this.output = BytesMut::new();
                } else {
                    this.output.advance(n);
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            if let Some(deadline) = this.deadline.as_mut() {
                if deadline.as_mut().poll(cx).is_ready() {
                    tracing::debug!("closing a connection that sent no request in time");
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no request within the first-request deadline",
                    )));
                }
            }
            // A frame payload with nothing buffered is read straight into
            // the server's buffer.
            if let State::Payload(left) = this.state {
                if this.input.is_empty() && left > 0 && buf.remaining() > 0 {
                    let room = left.min(buf.remaining());
                    let dst = buf.initialize_unfilled_to(room);
                    let mut direct = ReadBuf::new(dst);
                    ready!(Pin::new(&mut this.io).poll_read(cx, &mut direct))?;
                    let n = direct.filled().len();
                    if n == 0 {
                        this.eof = true;
                        continue;
                    }
                    buf.advance(n);
                    this.state = State::Payload(left - n);
                    if left == n {
                        this.state = State::FrameHeader;
                    }
                    return Poll::Ready(Ok(()));
                }
            }
            // Read into the stack: the guard keeps only what it could not
            // pass on yet (an incomplete frame header or header block), so
            // an idle connection holds no read buffer of its own.
            let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut read = ReadBuf::uninit(&mut chunk);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut read))?;
            let data = read.filled();
            if data.is_empty() {
                // The client closed its side; whatever is left unprocessed
                // is an incomplete frame the server would refuse anyway.
                this.eof = true;
                let rest = std::mem::take(&mut this.input);
                this.output.extend_from_slice(&rest);
                continue;
            }
            this.input.extend_from_slice(data);
            this.process()?;
            if this.input.is_empty() {
                this.input = BytesMut::new();
            }
        }
    }
}

crate::delegate_async_write!(impl[IO: AsyncWrite + Unpin] Http2Guard<IO>, io);

#[cfg(test)]
mod tests;
