//! gRPC framing for SDS, written so that streams hold no buffers while
//! idle and send shared bytes.
//!
//! Requests: length-prefixed messages read from the HTTP/2 body, at most
//! [`MAX_REQUEST`] each (Envoy's first request carries its node with the
//! list of its extensions: tens of KiB), uncompressed (the agent offers no
//! `grpc-encoding`). The buffer is released once a message is decoded, so
//! an idle stream keeps none (tonic's decoder keeps its largest).
//!
//! Responses: a `DiscoveryResponse` is sent as two HTTP/2 data chunks, the
//! gRPC prefix with this response's own fields (`version_info`,
//! `type_url`, `nonce`), then the shared encoded `resources` (protobuf
//! fields may come in any order). Trailers carry `grpc-status`.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body::Body as _;
use prost::Message;
use spinel_proto::envoy::service::discovery::v3::DiscoveryRequest;
use tonic::body::Body;
use tonic::Status;

use super::resources::Resources;
use super::session::Stamp;

/// The largest request message accepted.
pub(crate) const MAX_REQUEST: usize = 1024 * 1024;

/// Reads the request messages of one call.
#[derive(Debug)]
pub(crate) struct Requests {
    body: Body,
    buf: BytesMut,
    ended: bool,
}

impl Requests {
    /// The messages of `body`.
    pub(crate) fn new(body: Body) -> Self {
        Requests {
            body,
            buf: BytesMut::new(),
            ended: false,
        }
    }

    /// The next message; `None` once the client has ended its side.
    /// Cancel-safe: a partial message stays buffered.
    pub(crate) async fn next(&mut self) -> Option<Result<DiscoveryRequest, Status>> {
        loop {
            match self.take() {
                Ok(Some(message)) => return Some(Ok(message)),
                Ok(None) => {}
                Err(status) => return Some(Err(status)),
            }
            if self.ended {
                if self.buf.is_empty() {
                    return None;
                }
                return Some(Err(Status::internal("the request ended inside a message")));
            }
            let frame =
                std::future::poll_fn(|cx| std::pin::Pin::new(&mut self.body).poll_frame(cx)).await;
            match frame {
                None => self.ended = true,
                Some(Err(status)) => return Some(Err(status)),
                Some(Ok(frame)) => {
                    if let Ok(mut data) = frame.into_data() {
                        if self.buf.len() + data.remaining() > MAX_REQUEST + 5 {
                            return Some(Err(too_large()));
                        }
                        self.buf.put(&mut data);
                    }
                }
            }
        }
    }

    /// A whole message from the buffer, if there is one.
    fn take(&mut self) -> Result<Option<DiscoveryRequest>, Status> {
        let Some(header) = self.buf.get(..5) else {
            return Ok(None);
        };
        if header[0] != 0 {
            return Err(Status::unimplemented(
                "compressed messages are not supported",
            ));
        }
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if len > MAX_REQUEST {
            return Err(too_large());
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        self.buf.advance(5);
        let message = self.buf.split_to(len).freeze();
        if self.buf.is_empty() {
            // Give the memory back while the stream waits.
            self.buf = BytesMut::new();
        }
        DiscoveryRequest::decode(message)
            .map(Some)
            .map_err(|e| Status::internal(format!("the request could not be decoded: {e}")))
    }
}

fn too_large() -> Status {
    Status::resource_exhausted(format!(
        "request messages may be at most {MAX_REQUEST} bytes"
    ))
}

/// The first chunk of a response: gRPC prefix and this response's own
/// fields, for `resources` sent after it.
pub(crate) fn head(stamp: &Stamp, type_url: &str, resources: &Resources) -> Bytes {
    let mut fields = Vec::new();
    // Fields 1 (version_info), 4 (type_url), 5 (nonce).
    for (number, value) in [
        (1, &stamp.version),
        (4, &type_url.to_owned()),
        (5, &stamp.nonce),
    ] {
        if !value.is_empty() {
            prost::encoding::string::encode(number, value, &mut fields);
        }
    }
    let len = fields.len() + resources.bytes().len();
    let mut out = BytesMut::with_capacity(5 + fields.len());
    out.put_u8(0);
    // A response over 4 GiB cannot be framed; the agent's are far smaller.
    out.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    out.put_slice(&fields);
    out.freeze()
}

/// The trailers that end a call with `status`.
pub(crate) fn trailers(status: &Status) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    if status.add_header(&mut map).is_err() {
        map.insert("grpc-status", http::HeaderValue::from_static("13"));
    }
    map
}

#[cfg(test)]
mod tests {
    use spinel_proto::envoy::service::discovery::v3::DiscoveryResponse;
    use spinel_spiffe::{TrustBundle, TrustDomain};

    use super::super::select::Pick;
    use super::*;

    fn framed(message: &impl Message) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&(message.encoded_len() as u32).to_be_bytes());
        message.encode(&mut out).unwrap();
        out
    }

    fn body(chunks: Vec<Vec<u8>>) -> Body {
        let frames = futures::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, Status>(http_body::Frame::data(Bytes::from(c)))),
        );
        Body::new(http_body_util::StreamBody::new(frames))
    }

    #[tokio::test]
    async fn messages_across_chunks() {
        let a = DiscoveryRequest {
            resource_names: vec!["default".into()],
            ..Default::default()
        };
        let b = DiscoveryRequest {
            response_nonce: "1".into(),
            ..Default::default()
        };
        let mut bytes = framed(&a);
        bytes.extend(framed(&b));
        // Split in odd places, one byte of the second header in the first chunk.
        let split = framed(&a).len() + 1;
        let mut reqs = Requests::new(body(vec![
            bytes[..3].to_vec(),
            bytes[3..split].to_vec(),
            bytes[split..].to_vec(),
        ]));
        assert_eq!(reqs.next().await.unwrap().unwrap(), a);
        assert_eq!(reqs.next().await.unwrap().unwrap(), b);
        assert!(reqs.next().await.is_none());
        assert_eq!(reqs.buf.capacity(), 0);
    }

    #[tokio::test]
    async fn oversized_compressed_and_truncated_are_refused() {
        let mut big = vec![0];
        big.extend_from_slice(&((MAX_REQUEST + 1) as u32).to_be_bytes());
        let mut reqs = Requests::new(body(vec![big]));
        assert_eq!(
            reqs.next().await.unwrap().unwrap_err().code(),
            tonic::Code::ResourceExhausted
        );
        let mut reqs = Requests::new(body(vec![vec![1, 0, 0, 0, 0]]));
        assert_eq!(
            reqs.next().await.unwrap().unwrap_err().code(),
            tonic::Code::Unimplemented
        );
        let mut reqs = Requests::new(body(vec![vec![0, 0, 0, 0, 9, 1]]));
        assert_eq!(
            reqs.next().await.unwrap().unwrap_err().code(),
            tonic::Code::Internal
        );
    }

    #[test]
    fn head_and_shared_resources_decode_as_one_response() {
        let resources = Resources::encode(
            &[Pick::Bundle {
                name: "ROOTCA".into(),
                bundle: TrustBundle::new(TrustDomain::new("example.org").unwrap()),
            }],
            true,
        );
        let stamp = Stamp {
            version: "3".into(),
            nonce: "7".into(),
        };
        let mut wire = head(&stamp, "type.example/x", &resources).to_vec();
        wire.extend_from_slice(resources.bytes());
        let len = u32::from_be_bytes([wire[1], wire[2], wire[3], wire[4]]) as usize;
        assert_eq!(len, wire.len() - 5);
        let response = DiscoveryResponse::decode(&wire[5..]).unwrap();
        assert_eq!(response.version_info, "3");
        assert_eq!(response.nonce, "7");
        assert_eq!(response.type_url, "type.example/x");
        assert_eq!(response.resources.len(), 1);
    }
}
