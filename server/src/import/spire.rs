//! Reading a SPIRE server's SQL datastore (SQLite or PostgreSQL, schema as
//! SPIRE 1.13 writes it: migration version 23) into [`Records`].
//!
//! Only the columns the import needs are read, by name, and each query is
//! written so that both databases answer it alike: booleans become 0/1,
//! timestamps Unix seconds, NULLs defaults. The database is opened
//! read-only where the driver allows it (SQLite), and never written.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use prost::Message;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Row};

use super::Records;
use crate::datastore::sql::options::{self, DatabaseType};
use crate::datastore::{AttestedAgent, RegistrationEntry, StoredBundle, StoredJwtKey};
use crate::datastore::{StoredFederationRelationship, StoredSelector};

/// The SPIRE schema versions (its `migrations` table) this reader knows.
/// Others are read too, with a warning: columns are read by name.
pub const KNOWN_SCHEMA_VERSIONS: std::ops::RangeInclusive<i64> = 21..=23;

/// What went wrong reading the SPIRE datastore.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The connection string cannot be used.
    #[error("the SPIRE connection string: {0}")]
    ConnectionString(String),
    /// The database could not be reached or a query failed.
    #[error("reading the SPIRE datastore ({what}): {reason}")]
    Query {
        /// What was being read.
        what: &'static str,
        /// The driver's error.
        reason: String,
    },
    /// A row holds something SPIRE would not have written.
    #[error("the SPIRE datastore's {table} row {row}: {reason}")]
    Row {
        /// The table.
        table: &'static str,
        /// The row (its ID or key).
        row: String,
        /// What is wrong.
        reason: String,
    },
}

fn query_error(what: &'static str) -> impl Fn(sqlx::Error) -> ReadError {
    move |e| ReadError::Query {
        what,
        reason: e.to_string(),
    }
}

/// Connects to the SPIRE datastore (`database_type` and
/// `connection_string` as in SPIRE's `DataStore "sql"` block).
pub async fn connect(
    database_type: DatabaseType,
    connection_string: &str,
) -> Result<AnyPool, ReadError> {
    sqlx::any::install_default_drivers();
    let url = options::connection_url(database_type, connection_string)
        .map_err(|e| ReadError::ConnectionString(e.to_string()))?;
    let url = match database_type {
        // Never create or change the file: read-only, and an absent file
        // is an error rather than a new empty database.
        DatabaseType::Sqlite => {
            let path = options::sqlite_path(&url)
                .ok_or_else(|| ReadError::ConnectionString("not a SQLite file path".to_owned()))?;
            if !path.is_file() {
                return Err(ReadError::ConnectionString(format!(
                    "{} is not a file",
                    path.display()
                )));
            }
            format!("sqlite://{}?mode=ro", path.display())
        }
        DatabaseType::Postgres => url,
    };
    let connect = AnyConnectOptions::from_str(&url)
        .map_err(|_| ReadError::ConnectionString("not a usable connection string".to_owned()))?
        .disable_statement_logging();
    AnyPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(connect)
        .await
        .map_err(|e| ReadError::Query {
            what: "connecting",
            reason: e.to_string(),
        })
}

/// Unix seconds of a timestamp column, in `database_type`'s SQL (0 for NULL).
fn epoch(database_type: DatabaseType, column: &str) -> String {
    match database_type {
        DatabaseType::Postgres => {
            format!("COALESCE(CAST(EXTRACT(EPOCH FROM {column}) AS BIGINT), 0)")
        }
        DatabaseType::Sqlite => format!("COALESCE(CAST(strftime('%s', {column}) AS INTEGER), 0)"),
    }
}

/// A boolean column as 0/1 (NULL as 0), the same on both databases.
fn flag(column: &str) -> String {
    format!("CASE WHEN {column} THEN 1 ELSE 0 END")
}

/// `spiffe://example.org` (how SPIRE keys bundles) as `example.org`.
fn trust_domain_name(id: &str) -> &str {
    id.strip_prefix("spiffe://").unwrap_or(id)
}

/// Reads every part the import takes.
pub async fn read(pool: &AnyPool, database_type: DatabaseType) -> Result<Records, ReadError> {
    let schema_version = sqlx::query("SELECT version FROM migrations ORDER BY id DESC LIMIT 1")
        .fetch_optional(pool)
        .await
        .map_err(query_error("migrations (is this a SPIRE datastore?)"))?
        .map(|row| row.try_get::<i64, _>(0))
        .transpose()
        .map_err(query_error("migrations"))?;
    Ok(Records {
        schema_version,
        ca_journal: None,
        entries: entries(pool, database_type).await?,
        agents: agents(pool, database_type).await?,
        bundles: bundles(pool).await?,
        relationships: relationships(pool).await?,
        join_tokens: join_tokens(pool).await?,
    })
}

async fn entries(
    pool: &AnyPool,
    database_type: DatabaseType,
) -> Result<Vec<RegistrationEntry>, ReadError> {
    let sql = format!(
        "SELECT id, COALESCE(entry_id, ''), COALESCE(spiffe_id, ''), COALESCE(parent_id, ''), \
         CAST(COALESCE(ttl, 0) AS BIGINT), CAST(COALESCE(jwt_svid_ttl, 0) AS BIGINT), {}, {}, \
         COALESCE(expiry, 0), COALESCE(revision_number, 0), {}, COALESCE(hint, ''), {} \
         FROM registered_entries ORDER BY id",
        flag("admin"),
        flag("downstream"),
        flag("store_svid"),
        epoch(database_type, "created_at"),
    );
    let what = "registered_entries";
    let rows = sqlx::query(&sql)
        .fetch_all(pool)
        .await
        .map_err(query_error(what))?;
    let mut by_row: BTreeMap<i64, RegistrationEntry> = BTreeMap::new();
    for row in rows {
        let get_i64 = |i: usize| row.try_get::<i64, _>(i).map_err(query_error(what));
        let get_str = |i: usize| row.try_get::<String, _>(i).map_err(query_error(what));
        let row_id = get_i64(0)?;
        let ttl = |value: i64, column: &str| {
            i32::try_from(value).map_err(|_| ReadError::Row {
                table: what,
                row: row_id.to_string(),
                reason: format!("{column} {value} is out of range"),
            })
        };
        by_row.insert(
            row_id,
            RegistrationEntry {
                id: get_str(1)?,
                spiffe_id: get_str(2)?,
                parent_id: get_str(3)?,
                selectors: Vec::new(),
                x509_svid_ttl: ttl(get_i64(4)?, "ttl")?,
                jwt_svid_ttl: ttl(get_i64(5)?, "jwt_svid_ttl")?,
                federates_with: Vec::new(),
                admin: get_i64(6)? != 0,
                downstream: get_i64(7)? != 0,
                expires_at: get_i64(8)?,
                dns_names: Vec::new(),
                revision_number: get_i64(9)?,
                store_svid: get_i64(10)? != 0,
                hint: get_str(11)?,
                created_at: get_i64(12)?,
            },
        );
    }
    let what = "selectors";
    for row in sqlx::query(
        "SELECT registered_entry_id, COALESCE(type, ''), COALESCE(value, '') FROM selectors ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .map_err(query_error(what))?
    {
        let id: i64 = row.try_get(0).map_err(query_error(what))?;
        if let Some(entry) = by_row.get_mut(&id) {
            entry.selectors.push(StoredSelector {
                kind: row.try_get(1).map_err(query_error(what))?,
                value: row.try_get(2).map_err(query_error(what))?,
            });
        }
    }
    let what = "dns_names";
    for row in
        sqlx::query("SELECT registered_entry_id, COALESCE(value, '') FROM dns_names ORDER BY id")
            .fetch_all(pool)
            .await
            .map_err(query_error(what))?
    {
        let id: i64 = row.try_get(0).map_err(query_error(what))?;
        if let Some(entry) = by_row.get_mut(&id) {
            entry
                .dns_names
                .push(row.try_get(1).map_err(query_error(what))?);
        }
    }
    let what = "federated_registration_entries";
    for row in sqlx::query(
        "SELECT f.registered_entry_id, b.trust_domain FROM federated_registration_entries f \
         JOIN bundles b ON b.id = f.bundle_id ORDER BY b.trust_domain",
    )
    .fetch_all(pool)
    .await
    .map_err(query_error(what))?
    {
        let id: i64 = row.try_get(0).map_err(query_error(what))?;
        let td: String = row.try_get(1).map_err(query_error(what))?;
        if let Some(entry) = by_row.get_mut(&id) {
            entry.federates_with.push(trust_domain_name(&td).to_owned());
        }
    }
    Ok(by_row.into_values().collect())
}

async fn agents(
    pool: &AnyPool,
    database_type: DatabaseType,
) -> Result<Vec<AttestedAgent>, ReadError> {
    let what = "attested_node_entries";
    let sql = format!(
        "SELECT COALESCE(spiffe_id, ''), COALESCE(data_type, ''), COALESCE(serial_number, ''), {}, \
         COALESCE(new_serial_number, ''), {}, {} FROM attested_node_entries ORDER BY id",
        epoch(database_type, "expires_at"),
        epoch(database_type, "new_expires_at"),
        flag("can_reattest"),
    );
    let mut agents: BTreeMap<String, AttestedAgent> = BTreeMap::new();
    for row in sqlx::query(&sql)
        .fetch_all(pool)
        .await
        .map_err(query_error(what))?
    {
        let get_str = |i: usize| row.try_get::<String, _>(i).map_err(query_error(what));
        let get_i64 = |i: usize| row.try_get::<i64, _>(i).map_err(query_error(what));
        let serial = get_str(2)?;
        let id = get_str(0)?;
        agents.insert(
            id.clone(),
            AttestedAgent {
                spiffe_id: id,
                attestation_type: get_str(1)?,
                // SPIRE bans an agent by clearing its serial numbers.
                banned: serial.is_empty(),
                cert_serial_number: serial,
                cert_not_after: get_i64(3)?,
                new_cert_serial_number: get_str(4)?,
                new_cert_not_after: get_i64(5)?,
                selectors: Vec::new(),
                can_reattest: get_i64(6)? != 0,
            },
        );
    }
    let what = "node_resolver_map_entries";
    for row in sqlx::query(
        "SELECT COALESCE(spiffe_id, ''), COALESCE(type, ''), COALESCE(value, '') \
         FROM node_resolver_map_entries ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .map_err(query_error(what))?
    {
        let id: String = row.try_get(0).map_err(query_error(what))?;
        if let Some(agent) = agents.get_mut(&id) {
            agent.selectors.push(StoredSelector {
                kind: row.try_get(1).map_err(query_error(what))?,
                value: row.try_get(2).map_err(query_error(what))?,
            });
        }
    }
    Ok(agents.into_values().collect())
}

/// SPIRE's stored bundle (`spire.common.Bundle`, protobuf in `bundles.data`):
/// the fields the import reads, with SPIRE's field numbers.
#[derive(Clone, PartialEq, Message)]
struct SpireBundle {
    #[prost(string, tag = "1")]
    trust_domain_id: String,
    #[prost(message, repeated, tag = "2")]
    root_cas: Vec<SpireCertificate>,
    #[prost(message, repeated, tag = "3")]
    jwt_signing_keys: Vec<SpirePublicKey>,
    #[prost(int64, tag = "4")]
    refresh_hint: i64,
    #[prost(uint64, tag = "5")]
    sequence_number: u64,
}

#[derive(Clone, PartialEq, Message)]
struct SpireCertificate {
    #[prost(bytes = "vec", tag = "1")]
    der_bytes: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct SpirePublicKey {
    #[prost(bytes = "vec", tag = "1")]
    pkix_bytes: Vec<u8>,
    #[prost(string, tag = "2")]
    kid: String,
    #[prost(int64, tag = "3")]
    not_after: i64,
}

/// A SPIRE `bundles.data` value as Spinel stores a bundle.
pub fn decode_bundle(trust_domain: &str, data: &[u8]) -> Result<StoredBundle, ReadError> {
    let bundle = SpireBundle::decode(data).map_err(|e| ReadError::Row {
        table: "bundles",
        row: trust_domain.to_owned(),
        reason: format!("data is not a SPIRE bundle: {e}"),
    })?;
    let name = if bundle.trust_domain_id.is_empty() {
        trust_domain
    } else {
        bundle.trust_domain_id.as_str()
    };
    Ok(StoredBundle {
        trust_domain: trust_domain_name(name).to_owned(),
        x509_authorities: bundle.root_cas.into_iter().map(|c| c.der_bytes).collect(),
        jwt_authorities: bundle
            .jwt_signing_keys
            .into_iter()
            .map(|k| StoredJwtKey {
                key_id: k.kid,
                public_key: k.pkix_bytes,
                expires_at: k.not_after,
            })
            .collect(),
        refresh_hint: bundle.refresh_hint,
        sequence_number: bundle.sequence_number,
    })
}

async fn bundles(pool: &AnyPool) -> Result<Vec<StoredBundle>, ReadError> {
    let what = "bundles";
    let mut out = Vec::new();
    for row in sqlx::query("SELECT trust_domain, data FROM bundles ORDER BY trust_domain")
        .fetch_all(pool)
        .await
        .map_err(query_error(what))?
    {
        let td: String = row.try_get(0).map_err(query_error(what))?;
        let data: Vec<u8> = row.try_get(1).map_err(query_error(what))?;
        out.push(decode_bundle(&td, &data)?);
    }
    Ok(out)
}

async fn relationships(pool: &AnyPool) -> Result<Vec<StoredFederationRelationship>, ReadError> {
    let what = "federated_trust_domains";
    let mut out = Vec::new();
    for row in sqlx::query(
        "SELECT trust_domain, COALESCE(bundle_endpoint_url, ''), \
         COALESCE(bundle_endpoint_profile, ''), COALESCE(endpoint_spiffe_id, '') \
         FROM federated_trust_domains ORDER BY trust_domain",
    )
    .fetch_all(pool)
    .await
    .map_err(query_error(what))?
    {
        let td: String = row.try_get(0).map_err(query_error(what))?;
        out.push(StoredFederationRelationship {
            trust_domain: trust_domain_name(&td).to_owned(),
            bundle_endpoint_url: row.try_get(1).map_err(query_error(what))?,
            profile: row.try_get(2).map_err(query_error(what))?,
            endpoint_spiffe_id: row.try_get(3).map_err(query_error(what))?,
        });
    }
    Ok(out)
}

async fn join_tokens(pool: &AnyPool) -> Result<Vec<(String, i64)>, ReadError> {
    let what = "join_tokens";
    let mut out = Vec::new();
    for row in sqlx::query("SELECT token, COALESCE(expiry, 0) FROM join_tokens ORDER BY id")
        .fetch_all(pool)
        .await
        .map_err(query_error(what))?
    {
        out.push((
            row.try_get(0).map_err(query_error(what))?,
            row.try_get(1).map_err(query_error(what))?,
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spire_bundle_decodes_with_its_field_numbers() {
        let encoded = SpireBundle {
            trust_domain_id: "spiffe://example.org".into(),
            root_cas: vec![SpireCertificate {
                der_bytes: vec![1, 2],
            }],
            jwt_signing_keys: vec![SpirePublicKey {
                pkix_bytes: vec![3],
                kid: "k".into(),
                not_after: 99,
            }],
            refresh_hint: 300,
            sequence_number: 7,
        }
        .encode_to_vec();
        // Field 1, length 20, "spiffe://example.org": SPIRE's first bytes.
        assert_eq!(&encoded[..2], &[0x0a, 20]);
        let got = decode_bundle("spiffe://example.org", &encoded).unwrap();
        assert_eq!(got.trust_domain, "example.org");
        assert_eq!(got.x509_authorities, [vec![1, 2]]);
        assert_eq!(got.jwt_authorities[0].key_id, "k");
        assert_eq!(got.jwt_authorities[0].expires_at, 99);
        assert_eq!((got.refresh_hint, got.sequence_number), (300, 7));
        let err = decode_bundle("spiffe://x.org", &[0xff, 0xff]).unwrap_err();
        assert!(
            err.to_string().contains("bundles row spiffe://x.org"),
            "{err}"
        );
    }
}
