//! Flags of the `entry` subcommands, their checks, and the requests they
//! build. Everything here runs before any connection is made.

use std::path::PathBuf;

use spinel_proto::spire::api::server::entry::v1::{
    count_entries_request, list_entries_request, CountEntriesRequest, ListEntriesRequest,
};
use spinel_proto::spire::api::types::{
    entry::AdditionalAttributes, Entry, FederatesWithMatch, Selector, SelectorMatch,
};
use spinel_spiffe::id::{check_workload_id, server_id, SpiffeId, TrustDomain};

use crate::cli::admin_client::{
    id_to_proto, parse_dns_name, parse_go_bool, parse_match, parse_selector, parse_spiffe_id,
    parse_td, parse_ttl, parse_unix_seconds, AdminArgs, AdminClientError, MatchOn,
};

/// The flags that describe an entry, shared by `entry create` and `entry
/// update` (each adds its `-entryID` and its attribute flags).
#[derive(Debug, Clone, clap::Args)]
pub struct EntryFlags {
    /// The SPIFFE ID of this record's parent.
    #[arg(long = "parentID", value_name = "ID", value_parser = parse_spiffe_id)]
    pub parent_id: Option<SpiffeId>,
    /// The SPIFFE ID that this record represents.
    #[arg(long = "spiffeID", value_name = "ID", value_parser = parse_spiffe_id)]
    pub spiffe_id: Option<SpiffeId>,
    /// The lifetime, in seconds, of X509-SVIDs issued from this entry (0: server default).
    #[arg(long = "x509SVIDTTL", value_name = "SECONDS", allow_negative_numbers = true, value_parser = parse_ttl)]
    pub x509_svid_ttl: Option<i32>,
    /// Deprecated: use -x509SVIDTTL.
    #[arg(long = "ttl", value_name = "SECONDS", hide = true, allow_negative_numbers = true, value_parser = parse_ttl)]
    pub ttl: Option<i32>,
    /// The lifetime, in seconds, of JWT-SVIDs issued from this entry (0: server default).
    #[arg(long = "jwtSVIDTTL", value_name = "SECONDS", allow_negative_numbers = true, value_parser = parse_ttl)]
    pub jwt_svid_ttl: Option<i32>,
    /// Path to a file of registration entries in JSON; `-` reads stdin. Excludes the entry flags.
    #[arg(long = "data", value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// A colon-delimited type:value selector. Can be used more than once.
    #[arg(long = "selector", value_name = "TYPE:VALUE", value_parser = parse_selector)]
    pub selectors: Vec<Selector>,
    /// A trust domain to federate with. Can be used more than once.
    #[arg(long = "federatesWith", value_name = "TRUST_DOMAIN", value_parser = parse_td)]
    pub federates_with: Vec<TrustDomain>,
    /// The SPIFFE ID of this entry may use the server's admin APIs.
    #[arg(long = "admin", value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", hide_default_value = true, value_parser = parse_go_bool)]
    pub admin: bool,
    /// Issued SVIDs must be stored through an SVIDStore plugin.
    #[arg(long = "storeSVID", value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", hide_default_value = true, value_parser = parse_go_bool)]
    pub store_svid: bool,
    /// The entry describes a downstream server.
    #[arg(long = "downstream", value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", hide_default_value = true, value_parser = parse_go_bool)]
    pub downstream: bool,
    /// When the entry expires and is pruned, in seconds since the epoch.
    #[arg(long = "entryExpiry", value_name = "UNIX_SECONDS", allow_negative_numbers = true, value_parser = parse_unix_seconds)]
    pub entry_expiry: Option<i64>,
    /// A DNS name included in SVIDs issued from this entry. Can be used more than once.
    #[arg(long = "dns", value_name = "NAME", value_parser = parse_dns_name)]
    pub dns_names: Vec<String>,
    /// The entry hint, to tell apart entries with the same SPIFFE ID.
    #[arg(long = "hint", value_name = "HINT")]
    pub hint: Option<String>,
}

/// `entry create` flags.
#[derive(Debug, Clone, clap::Args)]
#[command(args_override_self = true)]
pub struct CreateArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// A custom ID for this registration entry (optional); the server generates one otherwise.
    #[arg(long = "entryID", value_name = "ID")]
    pub entry_id: Option<String>,
    #[command(flatten)]
    pub flags: EntryFlags,
    /// The entry applies to matching nodes (agents) rather than workloads: its parent is the server.
    #[arg(long = "node", value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", hide_default_value = true, value_parser = parse_go_bool)]
    pub node: bool,
    /// Agents do not prefetch X509-SVIDs for this entry.
    #[arg(long = "disableX509SVIDPrefetch", value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", hide_default_value = true, value_parser = parse_go_bool)]
    pub disable_x509_svid_prefetch: bool,
    /// JWT-SVIDs of this entry carry a unique `jti` claim and bypass the agent's cache.
    #[arg(long = "jwtSVIDIncludeJTI", value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", hide_default_value = true, value_parser = parse_go_bool)]
    pub jwt_svid_include_jti: bool,
}

/// `entry update` flags: an entry is replaced whole.
#[derive(Debug, Clone, clap::Args)]
#[command(args_override_self = true)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// The ID of the registration entry to update.
    #[arg(long = "entryID", value_name = "ID")]
    pub entry_id: Option<String>,
    #[command(flatten)]
    pub flags: EntryFlags,
    /// Agents do not prefetch X509-SVIDs for this entry (other attributes are kept).
    #[arg(long = "disableX509SVIDPrefetch", value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool)]
    pub disable_x509_svid_prefetch: Option<bool>,
    /// JWT-SVIDs of this entry carry a unique `jti` claim (other attributes are kept).
    #[arg(long = "jwtSVIDIncludeJTI", value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool)]
    pub jwt_svid_include_jti: Option<bool>,
}

/// `entry delete` flags.
#[derive(Debug, Clone, clap::Args)]
#[command(args_override_self = true)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// The ID of the registration entry to delete.
    #[arg(long = "entryID", value_name = "ID")]
    pub entry_id: Option<String>,
    /// Path to a JSON file `{"ids": [...]}` for batch deletion; `-` reads stdin.
    #[arg(long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
}

/// Filters shared by `entry show` and `entry count`.
#[derive(Debug, Clone, clap::Args)]
pub struct FilterArgs {
    /// Only entries with this parent ID.
    #[arg(long = "parentID", value_name = "ID", value_parser = parse_spiffe_id)]
    pub parent_id: Option<SpiffeId>,
    /// Only entries with this SPIFFE ID.
    #[arg(long = "spiffeID", value_name = "ID", value_parser = parse_spiffe_id)]
    pub spiffe_id: Option<SpiffeId>,
    /// Only downstream entries; without it, all entries (downstream or not), as SPIRE.
    #[arg(long = "downstream", value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", hide_default_value = true, value_parser = parse_go_bool)]
    pub downstream: bool,
    /// A colon-delimited type:value selector to match. Can be used more than once.
    #[arg(long = "selector", value_name = "TYPE:VALUE", value_parser = parse_selector)]
    pub selectors: Vec<Selector>,
    /// A federated trust domain to match. Can be used more than once.
    #[arg(long = "federatesWith", value_name = "TRUST_DOMAIN", value_parser = parse_td)]
    pub federates_with: Vec<TrustDomain>,
    /// How -federatesWith matches: exact, any, superset or subset.
    #[arg(long = "matchFederatesWithOn", value_name = "MODE", default_value = "superset", value_parser = parse_match)]
    pub match_federates_with_on: MatchOn,
    /// How -selector matches: exact, any, superset or subset.
    #[arg(long = "matchSelectorsOn", value_name = "MODE", default_value = "superset", value_parser = parse_match)]
    pub match_selectors_on: MatchOn,
    /// Only entries with this hint.
    #[arg(long = "hint", value_name = "HINT")]
    pub hint: Option<String>,
}

/// `entry show` flags.
#[derive(Debug, Clone, clap::Args)]
#[command(args_override_self = true)]
pub struct ShowArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// The ID of the entry to show; excludes the other filters.
    #[arg(long = "entryID", value_name = "ID")]
    pub entry_id: Option<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// `entry count` flags.
#[derive(Debug, Clone, clap::Args)]
#[command(args_override_self = true)]
pub struct CountArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
}

fn usage(message: impl Into<String>) -> AdminClientError {
    AdminClientError::usage(message)
}

/// `-ttl` is the old spelling of `-x509SVIDTTL`; both at once is a mistake.
fn x509_ttl(x509: Option<i32>, ttl: Option<i32>) -> Result<i32, AdminClientError> {
    match (x509, ttl) {
        (Some(_), Some(_)) => Err(usage(
            "-ttl is the deprecated spelling of -x509SVIDTTL; give only -x509SVIDTTL",
        )),
        (Some(v), None) | (None, Some(v)) => Ok(v),
        (None, None) => Ok(0),
    }
}

/// A workload entry's SPIFFE ID must have a path outside `/spire/`.
fn check_entry_id(id: &SpiffeId) -> Result<(), AdminClientError> {
    check_workload_id(id, id.trust_domain()).map_err(|e| usage(format!("-spiffeID: {e}")))
}

impl EntryFlags {
    /// True when any of these flags but `-data` is given.
    fn any(&self) -> bool {
        self.parent_id.is_some()
            || self.spiffe_id.is_some()
            || self.x509_svid_ttl.is_some()
            || self.ttl.is_some()
            || self.jwt_svid_ttl.is_some()
            || !self.selectors.is_empty()
            || !self.federates_with.is_empty()
            || self.admin
            || self.store_svid
            || self.downstream
            || self.entry_expiry.is_some()
            || !self.dns_names.is_empty()
            || self.hint.is_some()
    }

    /// `-data`, when no flag that describes an entry is given with it
    /// (`others`: one of the command's own is).
    fn data_file(&self, others: bool) -> Result<Option<&PathBuf>, AdminClientError> {
        match &self.data {
            Some(_) if others || self.any() => Err(usage(
                "-data can not be combined with flags that describe an entry",
            )),
            data => Ok(data.as_ref()),
        }
    }

    /// The entry these flags describe, once the command has checked them.
    fn entry(
        &self,
        id: String,
        spiffe_id: &SpiffeId,
        parent: &SpiffeId,
        additional_attributes: Option<AdditionalAttributes>,
    ) -> Result<Entry, AdminClientError> {
        Ok(Entry {
            id,
            spiffe_id: Some(id_to_proto(spiffe_id)),
            parent_id: Some(id_to_proto(parent)),
            selectors: self.selectors.clone(),
            x509_svid_ttl: x509_ttl(self.x509_svid_ttl, self.ttl)?,
            federates_with: self
                .federates_with
                .iter()
                .map(ToString::to_string)
                .collect(),
            admin: self.admin,
            downstream: self.downstream,
            expires_at: self.entry_expiry.unwrap_or(0),
            dns_names: self.dns_names.clone(),
            store_svid: self.store_svid,
            jwt_svid_ttl: self.jwt_svid_ttl.unwrap_or(0),
            hint: self.hint.clone().unwrap_or_default(),
            additional_attributes,
            ..Default::default()
        })
    }
}

impl CreateArgs {
    /// Checks the flags (in SPIRE's order) and builds the one entry they
    /// describe. Not for `-data`.
    pub fn entry(&self) -> Result<Entry, AdminClientError> {
        let flags = &self.flags;
        if flags.selectors.is_empty() {
            return Err(usage(
                "at least one selector is required (-selector type:value)",
            ));
        }
        if self.node && !flags.federates_with.is_empty() {
            return Err(usage(
                "node entries can not federate (-node with -federatesWith)",
            ));
        }
        if self.node && flags.parent_id.is_some() {
            return Err(usage(
                "-parentID can not be combined with -node: a node entry's parent is the server",
            ));
        }
        if flags.parent_id.is_none() && !self.node {
            return Err(usage(
                "a parent ID is required if the node flag is not set (-parentID or -node)",
            ));
        }
        let Some(spiffe_id) = &flags.spiffe_id else {
            return Err(usage("a SPIFFE ID is required (-spiffeID)"));
        };
        check_entry_id(spiffe_id)?;
        let parent = match &flags.parent_id {
            Some(parent) => parent.clone(),
            None => server_id(spiffe_id.trust_domain()),
        };
        let additional_attributes = (self.disable_x509_svid_prefetch || self.jwt_svid_include_jti)
            .then_some(AdditionalAttributes {
                disable_x509_svid_prefetch: self.disable_x509_svid_prefetch,
                jwt_svid_include_jti: self.jwt_svid_include_jti,
            });
        flags.entry(
            self.entry_id.clone().unwrap_or_default(),
            spiffe_id,
            &parent,
            additional_attributes,
        )
    }

    /// `-data`, when given alone.
    pub fn data_file(&self) -> Result<Option<&PathBuf>, AdminClientError> {
        self.flags.data_file(
            self.entry_id.is_some()
                || self.node
                || self.disable_x509_svid_prefetch
                || self.jwt_svid_include_jti,
        )
    }
}

impl UpdateArgs {
    /// Checks the flags (in SPIRE's order) and builds the replacement entry.
    /// Additional attributes not given on the command line are left unset;
    /// [`UpdateArgs::merge_attributes`] fills them from the stored entry.
    pub fn entry(&self) -> Result<Entry, AdminClientError> {
        let flags = &self.flags;
        let Some(entry_id) = self.entry_id.as_ref().filter(|id| !id.is_empty()) else {
            return Err(usage("entry ID is required (-entryID)"));
        };
        if flags.selectors.is_empty() {
            return Err(usage(
                "at least one selector is required (-selector type:value)",
            ));
        }
        let Some(parent) = &flags.parent_id else {
            return Err(usage("a parent ID is required (-parentID)"));
        };
        let Some(spiffe_id) = &flags.spiffe_id else {
            return Err(usage("a SPIFFE ID is required (-spiffeID)"));
        };
        check_entry_id(spiffe_id)?;
        let additional_attributes = self.attributes_given().then(|| AdditionalAttributes {
            disable_x509_svid_prefetch: self.disable_x509_svid_prefetch.unwrap_or(false),
            jwt_svid_include_jti: self.jwt_svid_include_jti.unwrap_or(false),
        });
        flags.entry(entry_id.clone(), spiffe_id, parent, additional_attributes)
    }

    /// True when an additional-attribute flag was given, so the stored
    /// entry's other attributes must be fetched and kept.
    pub fn attributes_given(&self) -> bool {
        self.disable_x509_svid_prefetch.is_some() || self.jwt_svid_include_jti.is_some()
    }

    /// Keeps the stored entry's attributes that were not given as flags.
    pub fn merge_attributes(&self, entry: &mut Entry, stored: &Entry) {
        let mut attrs = stored.additional_attributes.unwrap_or_default();
        if let Some(v) = self.disable_x509_svid_prefetch {
            attrs.disable_x509_svid_prefetch = v;
        }
        if let Some(v) = self.jwt_svid_include_jti {
            attrs.jwt_svid_include_jti = v;
        }
        entry.additional_attributes = Some(attrs);
    }

    /// `-data`, when given alone.
    pub fn data_file(&self) -> Result<Option<&PathBuf>, AdminClientError> {
        self.flags
            .data_file(self.entry_id.is_some() || self.attributes_given())
    }
}

impl DeleteArgs {
    /// The one entry of `-entryID`, or the `-file` of IDs; exactly one is required.
    pub fn target(&self) -> Result<DeleteTarget<'_>, AdminClientError> {
        match (&self.entry_id, &self.file) {
            (Some(_), Some(_)) => Err(usage("-entryID can not be combined with -file")),
            (_, Some(file)) => Ok(DeleteTarget::File(file)),
            (Some(id), None) if !id.is_empty() => Ok(DeleteTarget::Id(id)),
            _ => Err(usage("an entry ID is required (-entryID or -file)")),
        }
    }
}

/// What `entry delete` deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteTarget<'a> {
    /// One entry, by `-entryID`.
    Id(&'a str),
    /// The IDs listed in the `-file` JSON.
    File(&'a PathBuf),
}

impl FilterArgs {
    fn any(&self) -> bool {
        self.parent_id.is_some() || self.spiffe_id.is_some() || !self.selectors.is_empty()
    }

    fn selector_match(&self) -> Option<SelectorMatch> {
        (!self.selectors.is_empty()).then(|| SelectorMatch {
            selectors: self.selectors.clone(),
            r#match: self.match_selectors_on.selector_match() as i32,
        })
    }

    fn federates_with_match(&self) -> Option<FederatesWithMatch> {
        (!self.federates_with.is_empty()).then(|| FederatesWithMatch {
            trust_domains: self
                .federates_with
                .iter()
                .map(ToString::to_string)
                .collect(),
            r#match: self.match_federates_with_on.federates_with_match() as i32,
        })
    }

    /// The `ListEntries` filter. As SPIRE's CLI, `by_downstream` is always
    /// sent; the server (like SPIRE's datastore) filters only on `true`, so
    /// without `-downstream` every entry is listed.
    pub fn list_filter(&self) -> list_entries_request::Filter {
        list_entries_request::Filter {
            by_spiffe_id: self.spiffe_id.as_ref().map(id_to_proto),
            by_parent_id: self.parent_id.as_ref().map(id_to_proto),
            by_selectors: self.selector_match(),
            by_federates_with: self.federates_with_match(),
            by_hint: self.hint.clone(),
            by_downstream: Some(self.downstream),
        }
    }

    /// The `CountEntries` filter (same rules as [`FilterArgs::list_filter`]).
    pub fn count_filter(&self) -> count_entries_request::Filter {
        count_entries_request::Filter {
            by_spiffe_id: self.spiffe_id.as_ref().map(id_to_proto),
            by_parent_id: self.parent_id.as_ref().map(id_to_proto),
            by_selectors: self.selector_match(),
            by_federates_with: self.federates_with_match(),
            by_hint: self.hint.clone(),
            by_downstream: Some(self.downstream),
        }
    }
}

/// Entries per `ListEntries` page, as SPIRE's CLI asks.
pub const LIST_PAGE_SIZE: i32 = 500;

impl ShowArgs {
    /// `Some(id)` to fetch one entry by ID, `None` to list with the filters.
    pub fn by_id(&self) -> Result<Option<&str>, AdminClientError> {
        match &self.entry_id {
            Some(_) if self.filter.any() => {
                Err(usage("the -entryID flag can't be combined with others"))
            }
            Some(id) if id.is_empty() => Err(usage("-entryID must not be empty")),
            Some(id) => Ok(Some(id)),
            None => Ok(None),
        }
    }

    /// The first `ListEntries` request (later pages add the token).
    pub fn list_request(&self, page_token: String) -> ListEntriesRequest {
        ListEntriesRequest {
            filter: Some(self.filter.list_filter()),
            output_mask: None,
            page_size: LIST_PAGE_SIZE,
            page_token,
        }
    }
}

impl CountArgs {
    /// The `CountEntries` request.
    pub fn request(&self) -> CountEntriesRequest {
        CountEntriesRequest {
            filter: Some(self.filter.count_filter()),
        }
    }
}
