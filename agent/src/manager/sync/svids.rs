//! Step 6 of a sync round: X509-SVIDs for the entries that need one, asked
//! of the server in chunks of [`CHUNK`] with `BatchNewX509SVID`.
//!
//! - Every response stays far under the 4 MiB gRPC message limit, whatever
//!   the number of entries (the arithmetic is at [`CHUNK`]).
//! - Keys and CSRs of a chunk are made on the blocking pool, spread over
//!   the cores, while the previous chunk is being signed by the server
//!   ([`IN_FLIGHT`] chunks at a time).
//! - Each chunk's SVIDs are handed to the caller as they arrive; a chunk
//!   that fails stops the round but keeps the SVIDs of the chunks before
//!   it (the caller publishes them), so no work is lost and the next round
//!   only asks for what is still missing.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::stream::{self, StreamExt, TryStreamExt};
use spinel_proto::spire::api::server::svid::v1::svid_client::SvidClient;
use spinel_proto::spire::api::server::svid::v1::{
    batch_new_x509svid_response, BatchNewX509svidRequest, NewX509svidParams,
};
use tonic::transport::Channel;
use tonic::Status;
use zeroize::Zeroizing;

use crate::cache::{CachedEntry, Identity, X509SvidMaterial};
use crate::manager::certs::{key_and_csr, validity};

/// Entries per `BatchNewX509SVID` request.
///
/// The response must stay under gRPC's default 4 MiB message limit (SPIRE
/// servers keep it, and so does this agent's channel). One result is a
/// chain plus a few bytes of status. A generous worst case for a chain:
/// a leaf with a 2,048-byte SPIFFE ID, a few DNS names and an RSA-4096
/// signature (~3.5 KB), the Spinel CA as an intermediate under an
/// UpstreamAuthority (RSA-4096: ~1.5 KB) and two upstream intermediates
/// (~2 KB each): ~9 KB. 256 x 9 KB = 2.3 MB, about half the limit; the
/// usual P-256 chain (leaf ~0.6 KB + CA ~0.6 KB) makes a ~0.3 MB response.
/// The request (a ~0.3 KB CSR and an entry ID per item) is ~80 KB.
pub(super) const CHUNK: usize = 256;

/// Chunks asked of the server at once: one being signed while the next
/// one's keys are made and sent.
const IN_FLIGHT: usize = 2;

/// The SVIDs of one chunk, by entry ID.
pub(super) type Minted = BTreeMap<String, Arc<Identity>>;

/// Asks the server for an SVID for every entry of `wanted`, [`CHUNK`] at a
/// time, calling `apply` with each chunk's SVIDs in order as they arrive.
/// An entry the server refuses is logged and left out. The first failed
/// call ends it with that error, after `apply` has seen every chunk before.
pub(super) async fn mint(
    channel: Channel,
    wanted: Vec<CachedEntry>,
    mut apply: impl FnMut(Minted),
) -> Result<(), Status> {
    let chunks: Vec<Vec<CachedEntry>> = wanted.chunks(CHUNK).map(<[_]>::to_vec).collect();
    let count = chunks.len();
    let mut results = stream::iter(chunks.into_iter().enumerate())
        .map(|(index, chunk)| {
            let channel = channel.clone();
            async move {
                let (keys, params) = keys_and_csrs(&chunk).await?;
                let response = SvidClient::new(channel)
                    .batch_new_x509svid(BatchNewX509svidRequest { params })
                    .await?
                    .into_inner();
                tracing::trace!(chunk = index + 1, of = count, "BatchNewX509SVID answered");
                Ok::<_, Status>(collect(chunk, keys, response.results))
            }
        })
        .buffered(IN_FLIGHT);
    while let Some(minted) = results.try_next().await? {
        apply(minted);
    }
    Ok(())
}

/// A fresh key and CSR for every entry of `chunk`, in order, made on the
/// blocking pool in one part per core.
async fn keys_and_csrs(
    chunk: &[CachedEntry],
) -> Result<(Vec<Zeroizing<Vec<u8>>>, Vec<NewX509svidParams>), Status> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let part = chunk.len().div_ceil(cores).max(1);
    let tasks: Vec<_> = chunk
        .chunks(part)
        .map(|entries| {
            let n = entries.len();
            tokio::task::spawn_blocking(move || {
                (0..n).map(|_| key_and_csr()).collect::<Result<Vec<_>, _>>()
            })
        })
        .collect();
    let mut keys = Vec::with_capacity(chunk.len());
    let mut params = Vec::with_capacity(chunk.len());
    let mut entries = chunk.iter();
    for task in tasks {
        let made = task
            .await
            .map_err(|e| Status::internal(format!("key generation task failed: {e}")))?
            .map_err(|e| Status::internal(e.to_string()))?;
        for ((key, csr), entry) in made.into_iter().zip(entries.by_ref()) {
            keys.push(key);
            params.push(NewX509svidParams {
                entry_id: entry.id.clone(),
                csr,
            });
        }
    }
    Ok((keys, params))
}

/// Pairs the server's results with the entries and keys they answer (the
/// server answers in request order); refused or unreadable ones are logged
/// and left out.
pub(super) fn collect(
    chunk: Vec<CachedEntry>,
    keys: Vec<Zeroizing<Vec<u8>>>,
    results: Vec<batch_new_x509svid_response::Result>,
) -> Minted {
    if results.len() != chunk.len() {
        tracing::warn!(
            asked = chunk.len(),
            answered = results.len(),
            "the server answered a different number of SVIDs than asked for; the rest are asked for again next round"
        );
    }
    let mut minted = Minted::new();
    for ((entry, key), result) in chunk.into_iter().zip(keys).zip(results) {
        let status = result.status.unwrap_or_default();
        match result.svid {
            Some(svid) if status.code == 0 => {
                let Some((not_before, not_after)) =
                    svid.cert_chain.first().and_then(|c| validity(c))
                else {
                    tracing::warn!(entry_id = %entry.id, "the server returned an unreadable SVID");
                    continue;
                };
                minted.insert(
                    entry.id.clone(),
                    Arc::new(Identity {
                        entry,
                        svid: X509SvidMaterial {
                            chain: svid.cert_chain,
                            private_key: key,
                            not_before,
                            not_after,
                        },
                    }),
                );
            }
            _ => {
                tracing::warn!(entry_id = %entry.id, code = status.code, reason = %status.message, "the server did not sign an SVID for this entry")
            }
        }
    }
    minted
}

/// Whether to publish a snapshot after chunk number `done` (1-based) of
/// `count`: after the 1st, 2nd, 4th, 8th ... and the last, so the first
/// SVIDs reach workloads at once while a large sync publishes (and copies
/// the identity map) only a logarithmic number of times.
pub(super) fn publish_after(done: usize, count: usize) -> bool {
    done == count || done.is_power_of_two()
}

#[cfg(test)]
mod tests;
