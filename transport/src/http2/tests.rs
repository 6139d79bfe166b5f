//! The guard in front of a real `h2` server, fed raw client frames.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;
use crate::hpack::{encode, Field};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let len = payload.len();
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&stream_id.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn request_fields(authority: Option<&str>) -> Vec<Field> {
    let mut fields = vec![
        Field::new(":method", "POST"),
        Field::new(":scheme", "http"),
        Field::new(":path", "/SpiffeWorkloadAPI/FetchX509SVID"),
    ];
    if let Some(a) = authority {
        fields.push(Field::new(":authority", a));
    }
    fields.push(Field::new("content-type", "application/grpc"));
    fields.push(Field::new("te", "trailers"));
    fields
}

fn block(fields: &[Field]) -> Vec<u8> {
    let mut out = Vec::new();
    encode(fields, &mut out);
    out
}

/// The `:authority` of each request a server accepted (`None`: absent).
type Seen = tokio::task::JoinHandle<Result<Vec<Option<String>>, h2::Error>>;

/// Runs an `h2` server behind a guard; returns the client end and the
/// server's task.
fn serve(options: GuardOptions) -> (DuplexStream, Seen) {
    let (client, server) = tokio::io::duplex(1 << 20);
    let task = tokio::spawn(async move {
        let mut conn = h2::server::handshake(Http2Guard::new(server, options)).await?;
        let mut seen = Vec::new();
        while let Some(request) = conn.accept().await {
            let (request, mut respond) = request?;
            seen.push(request.uri().authority().map(|a| a.to_string()));
            let response = http::Response::builder().status(200).body(()).unwrap();
            let _ = respond.send_response(response, true);
        }
        Ok(seen)
    });
    (client, task)
}

const REPAIR: GuardOptions = GuardOptions {
    repair_authority: true,
    first_request_deadline: None,
};

async fn run(options: GuardOptions, frames: &[Vec<u8>]) -> Vec<Option<String>> {
    let (mut client, task) = serve(options);
    client.write_all(PREFACE).await.unwrap();
    client.write_all(&frame(0x4, 0, 0, &[])).await.unwrap();
    for f in frames {
        client.write_all(f).await.unwrap();
    }
    // Let the server answer, then hang up.
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(client);
    task.await.unwrap().unwrap_or_default()
}

#[tokio::test]
async fn every_authority_a_client_may_send_is_accepted() {
    let authorities = [
        None,
        Some(""),
        Some("localhost"),
        Some("tmp%2Fspinel-local-0%2Fagent%2Fpublic%2Fapi.sock"),
        Some("/tmp/spinel-local-0/agent/public/api.sock"),
        Some("unix:/tmp/x.sock"),
        Some("a b"),
        Some("[::1"),
        Some("spire-agent.sock:8081"),
    ];
    let frames: Vec<Vec<u8>> = authorities
        .iter()
        .enumerate()
        .map(|(i, a)| {
            frame(
                HEADERS,
                END_HEADERS | END_STREAM,
                1 + 2 * i as u32,
                &block(&request_fields(*a)),
            )
        })
        .collect();
    let seen = run(REPAIR, &frames).await;
    assert_eq!(
        seen,
        vec![
            None,
            Some("localhost".into()),
            Some("localhost".into()),
            Some("localhost".into()),
            Some("localhost".into()),
            Some("localhost".into()),
            Some("localhost".into()),
            Some("localhost".into()),
            Some("spire-agent.sock:8081".into()),
        ]
    );
}

#[tokio::test]
async fn without_repair_h2_refuses_what_c_core_sends() {
    // Documents why the guard exists: if h2 ever accepts this, the repair
    // is no longer needed (the request below would then be seen).
    let f = frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &block(&request_fields(Some("tmp%2Fx%2Fapi.sock"))),
    );
    let seen = run(GuardOptions::default(), &[f]).await;
    assert!(seen.is_empty(), "h2 accepted {seen:?} by itself");
}

#[tokio::test]
async fn dynamic_table_references_across_requests_are_resolved() {
    // As C-core does: the first request adds `:authority` to the dynamic
    // table (literal with incremental indexing, static name 1), later ones
    // refer to it by index 62.
    let authority = b"tmp%2Fx%2Fapi.sock";
    let path = b"/SpiffeWorkloadAPI/FetchX509SVID";
    let mut first = vec![0x83, 0x86, 0x04, path.len() as u8];
    first.extend_from_slice(path);
    first.push(0x41);
    first.push(authority.len() as u8);
    first.extend_from_slice(authority);
    let second = vec![0x83, 0x86, 0x04, 0x01, b'/', 0xbe];
    let seen = run(
        REPAIR,
        &[
            frame(HEADERS, END_HEADERS | END_STREAM, 1, &first),
            frame(HEADERS, END_HEADERS | END_STREAM, 3, &second),
            frame(HEADERS, END_HEADERS | END_STREAM, 5, &second),
        ],
    )
    .await;
    assert_eq!(seen, vec![Some("localhost".into()); 3]);
}

#[tokio::test]
async fn huffman_coded_fields_from_h2s_own_client_pass_unchanged() {
    // h2's client Huffman-codes every string and uses the dynamic table:
    // every header it sends must reach the server as sent.
    let (client_io, server_io) = tokio::io::duplex(1 << 20);
    let values: Vec<String> = vec![
        (0x20u8..0x7f).map(char::from).collect(),
        "\t tab".into(),
        "spiffe://example.org/ns/default/sa/api".into(),
    ];
    let server = tokio::spawn(async move {
        let mut conn = h2::server::handshake(Http2Guard::new(server_io, REPAIR))
            .await
            .unwrap();
        let mut seen = Vec::new();
        while let Some(Ok((request, mut respond))) = conn.accept().await {
            seen.push(request.headers().clone());
            let _ = respond.send_response(http::Response::new(()), true);
        }
        seen
    });
    let (mut h2c, conn) = h2::client::handshake(client_io).await.unwrap();
    let driver = tokio::spawn(conn);
    let mut high = http::HeaderValue::from_bytes(&(0x80u8..=0xff).collect::<Vec<_>>()).unwrap();
    high.set_sensitive(true);
    for round in 0..3 {
        let mut request = http::Request::builder()
            .method("POST")
            .uri("http://localhost/SpiffeWorkloadAPI/FetchJWTSVID");
        for (i, v) in values.iter().enumerate() {
            request = request.header(format!("x-value-{i}"), v.as_str());
        }
        let mut request = request
            .header("x-round", round.to_string())
            .body(())
            .unwrap();
        request.headers_mut().insert("x-high", high.clone());
        h2c = h2c.ready().await.unwrap();
        let (response, _) = h2c.send_request(request, true).unwrap();
        response.await.unwrap();
    }
    drop(h2c);
    driver.abort();
    let seen = server.await.unwrap();
    assert_eq!(seen.len(), 3);
    for (round, headers) in seen.iter().enumerate() {
        for (i, v) in values.iter().enumerate() {
            assert_eq!(headers[format!("x-value-{i}")], v.as_str());
        }
        assert_eq!(headers["x-round"], round.to_string().as_str());
        assert_eq!(headers["x-high"], high);
    }
}

#[tokio::test]
async fn continuation_padding_and_priority_are_handled() {
    let fields = {
        let mut f = request_fields(Some("tmp%2Fx%2Fapi.sock"));
        f.push(Field::new("x-big", "z".repeat(40_000)));
        f
    };
    let b = block(&fields);
    let (a, rest) = b.split_at(10_000);
    let (c, d) = rest.split_at(16_000);
    // HEADERS with padding and priority, then two CONTINUATIONs.
    let mut first = vec![3u8];
    first.extend_from_slice(&[0, 0, 0, 0, 15]);
    first.extend_from_slice(a);
    first.extend_from_slice(&[0, 0, 0]);
    let seen = run(
        REPAIR,
        &[
            frame(HEADERS, END_STREAM | PADDED | PRIORITY, 1, &first),
            frame(CONTINUATION, 0, 1, c),
            frame(CONTINUATION, END_HEADERS, 1, d),
        ],
    )
    .await;
    assert_eq!(seen, vec![Some("localhost".into())]);
}

#[tokio::test]
async fn data_frames_pass_through_untouched() {
    let (client, server) = tokio::io::duplex(1 << 16);
    let mut guard = Http2Guard::new(server, REPAIR);
    let mut client = client;
    let payload: Vec<u8> = (0..50_000u32).map(|i| i as u8).collect();
    let mut sent = PREFACE.to_vec();
    sent.extend(frame(0x0, 0, 1, &payload[..16_384]));
    sent.extend(frame(0x8, 0, 0, &[0, 0, 1, 0]));
    let writer = tokio::spawn(async move {
        client.write_all(&sent).await.unwrap();
        sent
    });
    let mut got = vec![0u8; PREFACE.len() + 9 + 16_384 + 9 + 4];
    guard.read_exact(&mut got).await.unwrap();
    assert_eq!(got, writer.await.unwrap());
}

async fn expect_closed(options: GuardOptions, frames: &[Vec<u8>]) {
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let mut guard = Http2Guard::new(server, options);
    client.write_all(PREFACE).await.unwrap();
    for f in frames {
        client.write_all(f).await.unwrap();
    }
    let mut sink = Vec::new();
    let err = guard.read_to_end(&mut sink).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
}

#[tokio::test]
async fn oversized_or_malformed_blocks_close_the_connection() {
    // A frame over the maximum frame size.
    expect_closed(
        REPAIR,
        &[frame(HEADERS, END_HEADERS, 1, &vec![0; MAX_FRAME_SIZE + 1])],
    )
    .await;
    // CONTINUATION flood past the block limit.
    let mut frames = vec![frame(HEADERS, 0, 1, &[0x82])];
    frames.extend((0..20).map(|_| frame(CONTINUATION, 0, 1, &vec![0x82; MAX_FRAME_SIZE])));
    expect_closed(REPAIR, &frames).await;
    // A decoded list past the limit: one big literal, then many references.
    let mut big = vec![0x40, 0x01, b'x', 0x7f, 0x81, 0x1f];
    big.extend(std::iter::repeat_n(b'y', 4000));
    big.extend(std::iter::repeat_n(0xbe, 100));
    expect_closed(REPAIR, &[frame(HEADERS, END_HEADERS, 1, &big)]).await;
    // A bad index.
    expect_closed(REPAIR, &[frame(HEADERS, END_HEADERS, 1, &[0xff, 0x00])]).await;
    // CONTINUATION of another stream, and a DATA frame inside a block.
    expect_closed(
        REPAIR,
        &[
            frame(HEADERS, 0, 1, &[0x82]),
            frame(CONTINUATION, END_HEADERS, 3, &[0x84]),
        ],
    )
    .await;
    expect_closed(
        REPAIR,
        &[frame(HEADERS, 0, 1, &[0x82]), frame(0x0, 0, 1, b"x")],
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_connection_without_a_request_is_closed_at_the_deadline() {
    let options = GuardOptions {
        repair_authority: false,
        first_request_deadline: Some(Duration::from_secs(10)),
    };
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let mut guard = Http2Guard::new(server, options);
    client.write_all(PREFACE).await.unwrap();
    client.write_all(&frame(0x4, 0, 0, &[])).await.unwrap();
    let mut buf = vec![0u8; PREFACE.len() + 9];
    guard.read_exact(&mut buf).await.unwrap();
    let started = tokio::time::Instant::now();
    let err = guard.read(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert_eq!(started.elapsed(), Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn a_request_in_time_lifts_the_deadline() {
    let options = GuardOptions {
        repair_authority: false,
        first_request_deadline: Some(Duration::from_secs(10)),
    };
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let mut guard = Http2Guard::new(server, options);
    let headers = frame(HEADERS, END_HEADERS, 1, &block(&request_fields(None)));
    client.write_all(PREFACE).await.unwrap();
    client.write_all(&headers).await.unwrap();
    let mut buf = vec![0u8; PREFACE.len() + headers.len()];
    guard.read_exact(&mut buf).await.unwrap();
    assert_eq!(guard.header_blocks(), 1);
    // Quiet for an hour: still open.
    let read = tokio::time::timeout(Duration::from_secs(3600), guard.read(&mut buf)).await;
    assert!(read.is_err(), "the connection was closed: {read:?}");
}

#[tokio::test]
async fn an_idle_connection_keeps_no_buffer_and_a_partial_frame_only_its_bytes() {
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let mut guard = Http2Guard::new(server, GuardOptions::default());
    let headers = frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &block(&request_fields(Some("localhost"))),
    );
    let mut whole = PREFACE.to_vec();
    whole.extend(frame(0x4, 0, 0, &[]));
    whole.extend(&headers);
    let ping = frame(0x6, 0, 0, &[7; 8]);
    // Everything, then the first five bytes of a PING frame's header.
    client.write_all(&whole).await.unwrap();
    client.write_all(&ping[..5]).await.unwrap();
    let mut out = vec![0; 1 << 16];
    let mut passed = 0;
    while passed < whole.len() {
        passed += guard.read(&mut out[passed..]).await.unwrap();
    }
    assert_eq!(&out[..passed], &whole[..]);
    assert_eq!(
        &guard.input[..],
        &ping[..5],
        "only the partial header is kept"
    );
    assert_eq!(guard.output.capacity(), 0, "the drained output is let go");

    client.write_all(&ping[5..]).await.unwrap();
    let mut got = 0;
    while got < ping.len() {
        got += guard.read(&mut out[got..]).await.unwrap();
    }
    assert_eq!(&out[..got], &ping[..]);
    assert_eq!(guard.input.capacity(), 0, "nothing held between frames");
    assert_eq!(guard.output.capacity(), 0);
    assert_eq!(guard.header_blocks(), 1);
}
