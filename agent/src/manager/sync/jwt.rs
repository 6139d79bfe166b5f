//! The agent as the Workload API's [`JwtSvidSource`]: JWT-SVIDs are
//! minted by the server per entry and audience set and cached until half
//! their lifetime.

use std::sync::Arc;

use async_trait::async_trait;
use spinel_proto::spire::api::server::svid::v1::svid_client::SvidClient;
use spinel_proto::spire::api::server::svid::v1::NewJwtsvidRequest;
use spinel_spiffe::clock::from_unix_seconds;

use crate::cache::{CachedEntry, JwtSvidError, JwtSvidSource};
use crate::manager::state::Manager;
use crate::manager::timing::renewal_due_at;

/// The most JWT-SVIDs kept cached.
const JWT_CACHE_LIMIT: usize = 4096;

#[async_trait]
impl JwtSvidSource for Manager {
    async fn fetch_jwt_svid(
        &self,
        entry: &CachedEntry,
        audience: &[String],
    ) -> Result<String, JwtSvidError> {
        if audience.is_empty() {
            return Err(JwtSvidError::Invalid("audience is required".into()));
        }
        let mut sorted = audience.to_vec();
        sorted.sort();
        sorted.dedup();
        let key = (entry.id.clone(), sorted);
        let now = self.clock.now();
        if let Ok(cache) = self.jwt_cache.lock() {
            if let Some((token, issued, expires)) = cache.get(&key) {
                if renewal_due_at(*issued, *expires, 0.0) > now {
                    return Ok(token.clone());
                }
            }
        }
        let request = NewJwtsvidRequest {
            audience: audience.to_vec(),
            entry_id: entry.id.clone(),
        };
        let presented = self.agent_svid();
        let mut result = SvidClient::new(self.channel())
            .new_jwtsvid(request.clone())
            .await;
        // The agent SVID may have been renewed while this call was on its
        // way: once the server has seen the new one, the old one is
        // superseded. Ask again, once, with the new one.
        if matches!(&result, Err(s) if s.code() == tonic::Code::PermissionDenied)
            && !Arc::ptr_eq(&presented, &self.agent_svid())
        {
            result = SvidClient::new(self.channel()).new_jwtsvid(request).await;
        }
        let response = result
            .map_err(|s| match s.code() {
                tonic::Code::InvalidArgument => JwtSvidError::Invalid(s.message().to_owned()),
                _ => JwtSvidError::Unavailable(format!("{}: {}", s.code(), s.message())),
            })?
            .into_inner();
        let svid = response
            .svid
            .ok_or_else(|| JwtSvidError::Unavailable("the server returned no JWT-SVID".into()))?;
        let issued = from_unix_seconds(svid.issued_at);
        let expires = from_unix_seconds(svid.expires_at);
        if let Ok(mut cache) = self.jwt_cache.lock() {
            if cache.len() >= JWT_CACHE_LIMIT {
                cache.retain(|_, (_, _, exp)| *exp > now);
                if cache.len() >= JWT_CACHE_LIMIT {
                    cache.clear();
                }
            }
            cache.insert(key, (svid.token.clone(), issued, expires));
        }
        Ok(svid.token)
    }
}
