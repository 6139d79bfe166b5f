//! `spire.api.server.entry.v1.Entry`: registration entries, and the
//! entries each agent is authorized for.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use spinel_proto::spire::api::server::entry::v1::{
    batch_create_entry_response, batch_delete_entry_response, batch_update_entry_response,
    entry_server::Entry, BatchCreateEntryRequest, BatchCreateEntryResponse,
    BatchDeleteEntryRequest, BatchDeleteEntryResponse, BatchUpdateEntryRequest,
    BatchUpdateEntryResponse, CountEntriesRequest, CountEntriesResponse,
    GetAuthorizedEntriesRequest, GetAuthorizedEntriesResponse, GetEntryRequest, ListEntriesRequest,
    ListEntriesResponse, SyncAuthorizedEntriesRequest, SyncAuthorizedEntriesResponse,
};
use spinel_proto::spire::api::types;
use tonic::{Code, Request, Response, Status, Streaming};

use super::auth::{method, Caller};
use super::authorized::AuthorizedSet;
use super::convert::{entry_to_proto_masked, set_matches};
use super::error::{ok_status, ApiError, ApiResult};
use super::{sync, validate, ApiState};
use crate::datastore::{DataStoreError, EntryFilter, RegistrationEntry, SelectorMatch};

/// The Entry service.
#[derive(Debug, Clone)]
pub struct EntryService {
    state: Arc<ApiState>,
}

impl EntryService {
    /// The service over `state`.
    pub fn new(state: Arc<ApiState>) -> Self {
        EntryService { state }
    }
}

/// The filter fields shared by `CountEntries` and `ListEntries`.
struct FilterParts<'a> {
    by_spiffe_id: Option<&'a types::Spiffeid>,
    by_parent_id: Option<&'a types::Spiffeid>,
    by_selectors: Option<&'a types::SelectorMatch>,
    by_federates_with: Option<&'a types::FederatesWithMatch>,
    by_hint: Option<&'a String>,
    by_downstream: Option<bool>,
}

/// A validated filter: what the datastore filters, plus the federation
/// match the API applies itself.
struct Filter {
    store: EntryFilter,
    federates_with: Option<(BTreeSet<String>, i32)>,
}

impl Filter {
    fn new(td: &spinel_spiffe::TrustDomain, p: FilterParts<'_>) -> ApiResult<Self> {
        let mut store = EntryFilter::default();
        if let Some(id) = p.by_parent_id {
            let id = validate::member_id(td, Some(id))
                .map_err(|e| ApiError::invalid("malformed parent ID filter", e))?;
            store.parent_id = Some(id.to_string());
        }
        if let Some(id) = p.by_spiffe_id {
            let id = validate::workload_id(td, Some(id))
                .map_err(|e| ApiError::invalid("malformed SPIFFE ID filter", e))?;
            store.spiffe_id = Some(id.to_string());
        }
        if let Some(m) = p.by_selectors {
            let selectors = validate::selectors(&m.selectors)
                .map_err(|e| ApiError::invalid("malformed selectors filter", e))?;
            let behavior = match m.r#match {
                1 => SelectorMatch::Subset,
                2 => SelectorMatch::Superset,
                3 => SelectorMatch::Any,
                _ => SelectorMatch::Exact,
            };
            store.selectors = Some((selectors, behavior));
        }
        let federates_with = match p.by_federates_with {
            Some(m) => {
                if m.trust_domains.is_empty() {
                    return Err(ApiError::invalid(
                        "malformed federates with filter",
                        "empty trust domain set",
                    ));
                }
                let tds = m
                    .trust_domains
                    .iter()
                    .map(|t| validate::federated_trust_domain(t))
                    .collect::<Result<BTreeSet<_>, _>>()
                    .map_err(|e| ApiError::invalid("malformed federates with filter", e))?;
                Some((tds, m.r#match))
            }
            None => None,
        };
        store.hint = p.by_hint.cloned();
        // SPIRE's datastore filters only on `true`: its CLI always sends the
        // flag's value, so `false` must mean "all entries", not "only
        // non-downstream ones".
        store.downstream = p.by_downstream.filter(|d| *d);
        Ok(Filter {
            store,
            federates_with,
        })
    }

    /// Whether the filter keeps every entry, as the one SPIRE's CLI sends
    /// without flags (`by_downstream: false` and nothing else).
    fn keeps_all(&self) -> bool {
        let EntryFilter {
            spiffe_id,
            parent_id,
            selectors,
            federates_with,
            hint,
            downstream,
        } = &self.store;
        spiffe_id.is_none()
            && parent_id.is_none()
            && selectors.is_none()
            && federates_with.is_none()
            && hint.is_none()
            && downstream.is_none()
            && self.federates_with.is_none()
    }

    fn keeps(&self, e: &RegistrationEntry) -> bool {
        match &self.federates_with {
            Some((tds, behavior)) => {
                let own: BTreeSet<String> = e.federates_with.iter().cloned().collect();
                set_matches(&own, tds, *behavior)
            }
            None => true,
        }
    }
}

impl EntryService {
    async fn entries(&self, filter: &Filter) -> ApiResult<Vec<RegistrationEntry>> {
        let entries = self
            .state
            .datastore
            .list_entries(&filter.store)
            .await
            .map_err(|e| ApiError::datastore("failed to list entries", e))?;
        Ok(entries.into_iter().filter(|e| filter.keeps(e)).collect())
    }

    /// One page of `ListEntries`: at most `page_size` entries (all of them
    /// when it is 0) after the entry `page_token` names, and the token of
    /// the next page (empty on the last). The datastore is read a page at
    /// a time, so listing a large table page by page stays linear.
    async fn entries_page(
        &self,
        filter: &Filter,
        page_token: &str,
        page_size: i32,
    ) -> ApiResult<(Vec<RegistrationEntry>, String)> {
        let size = usize::try_from(page_size).unwrap_or(0);
        if size == 0 {
            let after = (!page_token.is_empty()).then_some(page_token);
            let mut entries = self.entries(filter).await?;
            if let Some(after) = after {
                entries.retain(|e| e.id.as_str() > after);
            }
            return Ok((entries, String::new()));
        }
        let mut page = Vec::with_capacity(size + 1);
        let mut after = (!page_token.is_empty()).then(|| page_token.to_owned());
        loop {
            // One more than the page holds: whether a next page exists.
            let want = size + 1 - page.len();
            let chunk = self
                .state
                .datastore
                .list_entries_page(&filter.store, after.as_deref(), want)
                .await
                .map_err(|e| ApiError::datastore("failed to list entries", e))?;
            let exhausted = chunk.len() < want;
            after = chunk.last().map(|e| e.id.clone());
            page.extend(chunk.into_iter().filter(|e| filter.keeps(e)));
            if exhausted || page.len() > size {
                break;
            }
        }
        if page.len() <= size {
            return Ok((page, String::new()));
        }
        page.truncate(size);
        let next = page.last().map(|e| e.id.clone()).unwrap_or_default();
        Ok((page, next))
    }

    /// The result of one entry of a batch create, from what the datastore
    /// did with it.
    async fn created(
        &self,
        outcome: Result<RegistrationEntry, DataStoreError>,
        mask: Option<&types::EntryMask>,
    ) -> batch_create_entry_response::Result {
        match outcome {
            Ok(stored) => {
                tracing::info!(entry_id = %stored.id, spiffe_id = %stored.spiffe_id, "entry created");
                super::audit::note_entity(&stored.id);
                batch_create_entry_response::Result {
                    status: Some(ok_status()),
                    entry: Some(entry_to_proto_masked(&stored, mask)),
                }
            }
            Err(DataStoreError::AlreadyExists { id, .. }) => {
                // As SPIRE: report the similar entry, with AlreadyExists.
                let existing = self.state.datastore.get_entry(&id).await.ok().flatten();
                batch_create_entry_response::Result {
                    status: Some(
                        ApiError::new(Code::AlreadyExists, "similar entry already exists")
                            .to_proto(),
                    ),
                    entry: existing.map(|x| entry_to_proto_masked(&x, mask)),
                }
            }
            Err(e) => batch_create_entry_response::Result {
                status: Some(ApiError::datastore("failed to create entry", e).to_proto()),
                entry: None,
            },
        }
    }

    async fn update(
        &self,
        e: &types::Entry,
        input_mask: Option<&types::EntryMask>,
    ) -> ApiResult<RegistrationEntry> {
        validate::entry_id(&e.id).map_err(|r| ApiError::invalid("failed to convert entry", r))?;
        let update = validate::entry(&self.state.trust_domain, e, input_mask)
            .map_err(|r| ApiError::invalid("failed to convert entry", r))?;
        let ds = &self.state.datastore;
        let stored = ds
            .get_entry(&e.id)
            .await
            .map_err(|err| ApiError::datastore("failed to update entry", err))?
            .ok_or_else(|| ApiError::not_found("failed to update entry: entry not found"))?;
        let merged = validate::merge_entry(&stored, update, input_mask);
        validate::not_own_parent(&merged)
            .map_err(|r| ApiError::invalid("failed to update entry", r))?;
        let updated = ds
            .update_entry(merged)
            .await
            .map_err(|err| ApiError::datastore("failed to update entry", err))?;
        tracing::info!(entry_id = %updated.id, "entry updated");
        super::audit::note_entity(&updated.id);
        Ok(updated)
    }

    async fn delete(&self, id: &str) -> batch_delete_entry_response::Result {
        let status = if id.is_empty() {
            ApiError::invalid_msg("missing entry ID").to_proto()
        } else {
            match self.state.datastore.delete_entry(id).await {
                Ok(_) => {
                    tracing::info!(entry_id = %id, "entry deleted");
                    super::audit::note_entity(id);
                    ok_status()
                }
                Err(DataStoreError::NotFound { .. }) => {
                    ApiError::not_found("entry not found").to_proto()
                }
                Err(e) => ApiError::datastore("failed to delete entry", e).to_proto(),
            }
        };
        batch_delete_entry_response::Result {
            status: Some(status),
            id: id.to_owned(),
        }
    }

    /// The entries the calling agent is authorized for.
    pub(super) async fn authorized(
        state: &ApiState,
        caller: &Caller,
    ) -> ApiResult<Arc<AuthorizedSet>> {
        let Caller::Agent { agent, .. } = caller else {
            return Err(ApiError::new(Code::Internal, "caller is not an agent"));
        };
        state
            .authorized
            .for_agent(
                state.datastore.as_ref(),
                agent,
                state.clock.unix_seconds(),
                state.changes.settled().map(|s| s.entries_revision),
            )
            .await
            .map_err(|e| ApiError::datastore("failed to fetch entries", e))
    }
}

type SyncStream =
    Pin<Box<dyn Stream<Item = Result<SyncAuthorizedEntriesResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Entry for EntryService {
    async fn count_entries(
        &self,
        request: Request<CountEntriesRequest>,
    ) -> Result<Response<CountEntriesResponse>, Status> {
        self.state
            .authorize(request.extensions(), method::COUNT_ENTRIES)
            .await?;
        let req = request.into_inner();
        let filter = match req.filter.as_ref() {
            None => None,
            Some(f) => Some(Filter::new(
                &self.state.trust_domain,
                FilterParts {
                    by_spiffe_id: f.by_spiffe_id.as_ref(),
                    by_parent_id: f.by_parent_id.as_ref(),
                    by_selectors: f.by_selectors.as_ref(),
                    by_federates_with: f.by_federates_with.as_ref(),
                    by_hint: f.by_hint.as_ref(),
                    by_downstream: f.by_downstream,
                },
            )?),
        };
        // Counting everything reads the store's counter; only a real filter
        // lists (and decodes) the entries it looks at.
        let count = match filter {
            Some(filter) if !filter.keeps_all() => {
                u64::try_from(self.entries(&filter).await?.len()).unwrap_or(u64::MAX)
            }
            _ => self
                .state
                .datastore
                .count_entries()
                .await
                .map_err(|e| ApiError::datastore("failed to count entries", e))?,
        };
        Ok(Response::new(CountEntriesResponse {
            count: i32::try_from(count).unwrap_or(i32::MAX),
        }))
    }

    async fn list_entries(
        &self,
        request: Request<ListEntriesRequest>,
    ) -> Result<Response<ListEntriesResponse>, Status> {
        self.state
            .authorize(request.extensions(), method::LIST_ENTRIES)
            .await?;
        let req = request.into_inner();
        let f = req.filter.clone().unwrap_or_default();
        let filter = Filter::new(
            &self.state.trust_domain,
            FilterParts {
                by_spiffe_id: f.by_spiffe_id.as_ref(),
                by_parent_id: f.by_parent_id.as_ref(),
                by_selectors: f.by_selectors.as_ref(),
                by_federates_with: f.by_federates_with.as_ref(),
                by_hint: f.by_hint.as_ref(),
                by_downstream: f.by_downstream,
            },
        )?;
        let (page, next_page_token) = self
            .entries_page(&filter, &req.page_token, req.page_size)
            .await?;
        Ok(Response::new(ListEntriesResponse {
            entries: page
                .iter()
                .map(|e| entry_to_proto_masked(e, req.output_mask.as_ref()))
                .collect(),
            next_page_token,
        }))
    }

    async fn get_entry(
        &self,
        request: Request<GetEntryRequest>,
    ) -> Result<Response<types::Entry>, Status> {
        self.state
            .authorize(request.extensions(), method::GET_ENTRY)
            .await?;
        let req = request.into_inner();
        if req.id.is_empty() {
            return Err(ApiError::invalid_msg("missing ID").into());
        }
        super::audit::note_entity(&req.id);
        let entry = self
            .state
            .datastore
            .get_entry(&req.id)
            .await
            .map_err(|e| ApiError::datastore("failed to fetch entry", e))?
            .ok_or_else(|| ApiError::not_found("entry not found"))?;
        Ok(Response::new(entry_to_proto_masked(
            &entry,
            req.output_mask.as_ref(),
        )))
    }

    async fn batch_create_entry(
        &self,
        request: Request<BatchCreateEntryRequest>,
    ) -> Result<Response<BatchCreateEntryResponse>, Status> {
        self.state
            .authorize(request.extensions(), method::BATCH_CREATE_ENTRY)
            .await?;
        let req = request.into_inner();
        let mask = req.output_mask.as_ref();
        // Invalid entries get their answer now; the valid ones go to the
        // datastore together (one durable write for the batch).
        let mut results = vec![None; req.entries.len()];
        let mut valid = Vec::with_capacity(req.entries.len());
        let mut slots = Vec::with_capacity(req.entries.len());
        for (slot, e) in req.entries.iter().enumerate() {
            match validate::entry(&self.state.trust_domain, e, None) {
                Ok(entry) => {
                    valid.push(entry);
                    slots.push(slot);
                }
                Err(reason) => {
                    results[slot] = Some(batch_create_entry_response::Result {
                        status: Some(
                            ApiError::invalid("failed to convert entry", reason).to_proto(),
                        ),
                        entry: None,
                    });
                }
            }
        }
        if !valid.is_empty() {
            match self.state.datastore.create_entries(valid).await {
                Ok(outcomes) => {
                    for (slot, outcome) in slots.into_iter().zip(outcomes) {
                        results[slot] = Some(self.created(outcome, mask).await);
                    }
                }
                Err(e) => {
                    let status = ApiError::datastore("failed to create entry", e).to_proto();
                    for slot in slots {
                        results[slot] = Some(batch_create_entry_response::Result {
                            status: Some(status.clone()),
                            entry: None,
                        });
                    }
                }
            }
        }
        let results = results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| batch_create_entry_response::Result {
                    status: Some(
                        ApiError::new(Code::Internal, "the datastore left an entry unanswered")
                            .to_proto(),
                    ),
                    entry: None,
                })
            })
            .collect();
        Ok(Response::new(BatchCreateEntryResponse { results }))
    }

    async fn batch_update_entry(
        &self,
        request: Request<BatchUpdateEntryRequest>,
    ) -> Result<Response<BatchUpdateEntryResponse>, Status> {
        self.state
            .authorize(request.extensions(), method::BATCH_UPDATE_ENTRY)
            .await?;
        let req = request.into_inner();
        let mut results = Vec::with_capacity(req.entries.len());
        for e in &req.entries {
            let result = match self.update(e, req.input_mask.as_ref()).await {
                Ok(updated) => batch_update_entry_response::Result {
                    status: Some(ok_status()),
                    entry: Some(entry_to_proto_masked(&updated, req.output_mask.as_ref())),
                },
                Err(err) => batch_update_entry_response::Result {
                    status: Some(err.to_proto()),
                    entry: None,
                },
            };
            results.push(result);
        }
        Ok(Response::new(BatchUpdateEntryResponse { results }))
    }

    async fn batch_delete_entry(
        &self,
        request: Request<BatchDeleteEntryRequest>,
    ) -> Result<Response<BatchDeleteEntryResponse>, Status> {
        self.state
            .authorize(request.extensions(), method::BATCH_DELETE_ENTRY)
            .await?;
        let req = request.into_inner();
        let mut results = Vec::with_capacity(req.ids.len());
        for id in &req.ids {
            results.push(self.delete(id).await);
        }
        Ok(Response::new(BatchDeleteEntryResponse { results }))
    }

    async fn get_authorized_entries(
        &self,
        request: Request<GetAuthorizedEntriesRequest>,
    ) -> Result<Response<GetAuthorizedEntriesResponse>, Status> {
        let caller = self
            .state
            .authorize(request.extensions(), method::GET_AUTHORIZED_ENTRIES)
            .await?;
        let set = Self::authorized(&self.state, &caller).await?;
        let mask = request.get_ref().output_mask;
        let response = GetAuthorizedEntriesResponse {
            entries: set
                .entries()
                .iter()
                .map(|e| entry_to_proto_masked(e, mask.as_ref()))
                .collect(),
        };
        // The call has no paging: past the 4 MiB every gRPC client takes
        // by default, say so here rather than let the agent fail to
        // decode a message it cannot take, and retry forever.
        let size = prost::Message::encoded_len(&response);
        if size > super::MAX_RESPONSE_BYTES {
            return Err(ApiError::new(
                Code::ResourceExhausted,
                format!(
                    "the {} entries authorized for this agent take {size} bytes, over the {} a GetAuthorizedEntries response may have: sync with SyncAuthorizedEntries, which pages",
                    response.entries.len(),
                    super::MAX_RESPONSE_BYTES
                ),
            )
            .into());
        }
        Ok(Response::new(response))
    }

    type SyncAuthorizedEntriesStream = SyncStream;

    async fn sync_authorized_entries(
        &self,
        request: Request<Streaming<SyncAuthorizedEntriesRequest>>,
    ) -> Result<Response<Self::SyncAuthorizedEntriesStream>, Status> {
        let caller = self
            .state
            .authorize(request.extensions(), method::SYNC_AUTHORIZED_ENTRIES)
            .await?;
        let set = Self::authorized(&self.state, &caller).await?;
        let stream = sync::serve(set, request.into_inner(), super::SYNC_PAGE_SIZE);
        Ok(Response::new(Box::pin(stream)))
    }
}
