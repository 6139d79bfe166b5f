//! The HTTP/2 guard (`Http2Guard`) reading arbitrary client bytes. Input:
//! one option byte (bit 0: repair `:authority`; the rest: the size of the
//! reads the client's bytes arrive in), then the client's byte stream,
//! preface included.
//!
//! Invariants: no panic and no hang; the output the server reads is
//! bounded (at most the input plus, per header block, one decoded header
//! list and framing); with repair on, every header block passed on
//! decodes on a fresh decoder (it never refers to the client's dynamic
//! table) within the list limit, and every `:authority` in it is one
//! `http` accepts.
#![no_main]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use spinel_transport::hpack::Decoder;
use spinel_transport::http2::{MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE};
use spinel_transport::{GuardOptions, Http2Guard};
use tokio::io::{AsyncRead, ReadBuf};

/// The client: `data` in reads of at most `chunk` bytes, then end of file.
struct Client<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl AsyncRead for Client<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.data.len().min(self.chunk).min(buf.remaining());
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(()))
    }
}

const PREFACE_LEN: usize = 24;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// Framing the guard may add to a block it passes on: a HEADERS frame
/// header and priority fields, and a CONTINUATION frame header per
/// `MAX_FRAME_SIZE` bytes of a decoded list.
const FRAMING: usize = 9 + 5 + 9 * (MAX_HEADER_LIST_SIZE / MAX_FRAME_SIZE + 2);

/// Checks the header blocks of the guard's output (repair mode).
fn check_blocks(output: &[u8]) {
    let Some(mut rest) = output.get(PREFACE_LEN..) else {
        return;
    };
    let mut block: Option<Vec<u8>> = None;
    while rest.len() >= 9 {
        let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        let (kind, flags) = (rest[3], rest[4]);
        let Some(payload) = rest.get(9..9 + len) else {
            // The unprocessed tail at end of file.
            return;
        };
        rest = &rest[9 + len..];
        let fragment = match kind {
            HEADERS => {
                assert!(block.is_none(), "HEADERS inside a block");
                assert_eq!(flags & PADDED, 0, "the guard writes no padding");
                assert!(len <= MAX_FRAME_SIZE);
                let skip = if flags & PRIORITY != 0 { 5 } else { 0 };
                block.insert(Vec::new()).extend_from_slice(&payload[skip..]);
                true
            }
            CONTINUATION => {
                assert!(len <= MAX_FRAME_SIZE);
                block
                    .as_mut()
                    .expect("CONTINUATION after HEADERS")
                    .extend_from_slice(payload);
                true
            }
            _ => {
                assert!(block.is_none(), "a frame inside a header block");
                false
            }
        };
        if fragment && flags & END_HEADERS != 0 {
            let bytes = block.take().expect("a block");
            let fields = Decoder::new(4096, MAX_HEADER_LIST_SIZE)
                .decode(&bytes)
                .expect("a repaired block decodes without the client's dynamic table");
            for f in fields.iter().filter(|f| f.name == b":authority") {
                assert!(
                    http::uri::Authority::try_from(f.value.as_slice()).is_ok(),
                    "an :authority the server would refuse was passed on"
                );
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [options, stream @ ..] = data else {
        return;
    };
    let repair = options & 1 != 0;
    let chunk = [1, 7, 64, 1000, 8192, usize::MAX][usize::from(options >> 1) % 6];
    let mut guard = Http2Guard::new(
        Client {
            data: stream,
            chunk,
        },
        GuardOptions {
            repair_authority: repair,
            first_request_deadline: None,
        },
    );
    let mut cx = Context::from_waker(Waker::noop());
    let mut output = Vec::new();
    let mut buf = [0u8; 4096];
    // Every poll gives at least one byte or ends; the bound below ends a
    // guard that would give bytes without end.
    loop {
        let mut read = ReadBuf::new(&mut buf);
        match Pin::new(&mut guard).poll_read(&mut cx, &mut read) {
            Poll::Ready(Ok(())) if read.filled().is_empty() => break,
            Poll::Ready(Ok(())) => output.extend_from_slice(read.filled()),
            Poll::Ready(Err(_)) => break,
            Poll::Pending => panic!("the guard waits on a client that is always ready"),
        }
        let blocks = usize::try_from(guard.header_blocks()).expect("fits");
        let per_block = if repair {
            MAX_HEADER_LIST_SIZE + FRAMING
        } else {
            FRAMING
        };
        assert!(
            output.len() <= stream.len() + blocks * per_block,
            "{} bytes out of {} in ({blocks} blocks)",
            output.len(),
            stream.len()
        );
    }
    if repair {
        check_blocks(&output);
    }
});
