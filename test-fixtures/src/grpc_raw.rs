//! A gRPC client written frame by frame, for requests no gRPC library
//! would let a test send: any `:authority` (or none), as the client stacks
//! of other languages send them on Unix sockets (C-core: the
//! percent-encoded path; grpc-java: the raw path).
//!
//! One call per connection: preface, SETTINGS, HEADERS, one DATA frame
//! with the message; then it reads until the first response message or
//! the trailers, answering SETTINGS and PING as a client must.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use spinel_transport::hpack::{encode, Decoder, Field};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

/// How a call ended, as far as the client read it.
#[derive(Debug, Clone, Default)]
pub struct RawResponse {
    /// Response headers and trailers, in order.
    pub headers: Vec<(String, String)>,
    /// The first response message, if one came.
    pub message: Option<Vec<u8>>,
    /// `grpc-status`, when trailers came (0 is OK).
    pub grpc_status: Option<i32>,
    /// The server reset the stream with this HTTP/2 error code (1 is
    /// PROTOCOL_ERROR, what `h2` sends for a malformed `:authority`).
    pub reset: Option<u32>,
}

/// One unary or server-streaming call: `path` (`/Service/Method`), the
/// encoded request `message`, `authority` as the `:authority` pseudo
/// header (`None`: absent), extra `metadata`.
#[derive(Debug, Clone)]
pub struct RawCall<'a> {
    /// `/package.Service/Method`.
    pub path: &'a str,
    /// `:authority`, or none.
    pub authority: Option<&'a str>,
    /// Extra metadata, e.g. `("workload.spiffe.io", "true")`.
    pub metadata: &'a [(&'a str, &'a str)],
    /// The request message, protobuf-encoded.
    pub message: &'a [u8],
}

impl RawCall<'_> {
    /// Makes the call on the Unix socket at `socket`, within 10 s.
    pub async fn unix(&self, socket: &Path) -> Result<RawResponse> {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .with_context(|| format!("connecting to {}", socket.display()))?;
        tokio::time::timeout(Duration::from_secs(10), self.on(stream))
            .await
            .context("no answer within 10 s")?
    }

    /// Makes the call on an established connection.
    pub async fn on<S: AsyncRead + AsyncWrite + Unpin>(&self, mut io: S) -> Result<RawResponse> {
        let mut fields = vec![
            Field::new(":method", "POST"),
            Field::new(":scheme", "http"),
            Field::new(":path", self.path),
        ];
        if let Some(authority) = self.authority {
            fields.push(Field::new(":authority", authority));
        }
        fields.push(Field::new("content-type", "application/grpc"));
        fields.push(Field::new("te", "trailers"));
        for (k, v) in self.metadata {
            fields.push(Field::new(*k, *v));
        }
        let mut block = Vec::new();
        encode(&fields, &mut block);
        let mut grpc = vec![0u8];
        grpc.extend_from_slice(&(self.message.len() as u32).to_be_bytes());
        grpc.extend_from_slice(self.message);

        let mut out = PREFACE.to_vec();
        out.extend(frame(SETTINGS, 0, 0, &[]));
        out.extend(frame(HEADERS, END_HEADERS, 1, &block));
        out.extend(frame(DATA, END_STREAM, 1, &grpc));
        io.write_all(&out).await?;

        let mut decoder = Decoder::new(4096, 1 << 20);
        let mut response = RawResponse::default();
        let mut body = Vec::new();
        loop {
            let mut header = [0u8; 9];
            io.read_exact(&mut header)
                .await
                .context("the server closed the connection")?;
            let len = (usize::from(header[0]) << 16)
                | (usize::from(header[1]) << 8)
                | usize::from(header[2]);
            let (kind, flags) = (header[3], header[4]);
            let mut payload = vec![0u8; len];
            io.read_exact(&mut payload).await?;
            match kind {
                SETTINGS if flags & ACK == 0 => io.write_all(&frame(SETTINGS, ACK, 0, &[])).await?,
                PING if flags & ACK == 0 => io.write_all(&frame(PING, ACK, 0, &payload)).await?,
                HEADERS => {
                    if flags & END_HEADERS == 0 {
                        bail!("the test client does not read CONTINUATION frames");
                    }
                    for f in decoder.decode(&payload)? {
                        let (name, value) = (
                            String::from_utf8_lossy(&f.name).into_owned(),
                            String::from_utf8_lossy(&f.value).into_owned(),
                        );
                        if name == "grpc-status" {
                            response.grpc_status = value.parse().ok();
                        }
                        response.headers.push((name, value));
                    }
                    if response.grpc_status.is_some() {
                        return Ok(response);
                    }
                }
                DATA => {
                    body.extend_from_slice(&payload);
                    if len > 0 {
                        let inc = (len as u32).to_be_bytes();
                        io.write_all(&frame(WINDOW_UPDATE, 0, 0, &inc)).await?;
                        io.write_all(&frame(WINDOW_UPDATE, 0, 1, &inc)).await?;
                    }
                    if body.len() >= 5 {
                        let msg_len =
                            u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
                        if body.len() >= 5 + msg_len && response.message.is_none() {
                            response.message = Some(body[5..5 + msg_len].to_vec());
                            return Ok(response);
                        }
                    }
                }
                RST_STREAM => {
                    let code = payload
                        .get(..4)
                        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                    response.reset = code;
                    return Ok(response);
                }
                GOAWAY => bail!("the server sent GOAWAY"),
                _ => {}
            }
        }
    }
}

fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream_id.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The `:authority` values other gRPC stacks send for a Unix socket at
/// `socket` (see SPEC-NOTES.md), plus none, empty and `localhost`.
pub fn authorities_for(socket: &Path) -> Vec<Option<String>> {
    let raw = socket.display().to_string();
    let encoded = raw.trim_start_matches('/').replace('/', "%2F");
    vec![
        None,
        Some(String::new()),
        Some("localhost".into()),
        Some(encoded),
        Some(raw.clone()),
        Some(format!("unix:{raw}")),
        Some("any thing [printable] ~!".into()),
    ]
}
