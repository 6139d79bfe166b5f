//! `spinel-server datastore import`: reads another datastore and writes it
//! into the one this server's config names (see [`crate::import`]):
//!
//! - `-from spire -databaseType sqlite3|postgres -connectionString ...`: a
//!   SPIRE server's SQL datastore;
//! - `-from sled -path <dir>`: this server's own sled datastore, to move
//!   it to `DataStore "sql"` (the CA journal comes along, so the server
//!   keeps its CA; join tokens do not).
//!
//! A sled datastore is one process's: stop the server first.

use std::path::PathBuf;

use clap::ArgAction;

use crate::config::{self, Overrides};
use crate::datastore::sql::options::DatabaseType;
use crate::import::{self, spire};

/// `datastore` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum DatastoreCommand {
    /// Imports another datastore (`-from spire` or `-from sled`) into this
    /// server's.
    Import(ImportArgs),
}

/// `datastore import` flags.
#[derive(Debug, Clone, clap::Args)]
#[command(args_override_self = true)]
pub struct ImportArgs {
    /// Where the data comes from: `spire` (a SPIRE server's SQL datastore)
    /// or `sled` (a Spinel sled datastore, to move to SQL).
    #[arg(long = "from", value_parser = ["spire", "sled"])]
    pub from: String,
    /// `-from spire`: the SPIRE datastore's `database_type`, `sqlite3` or
    /// `postgres`.
    #[arg(long = "databaseType", value_parser = parse_database_type)]
    pub database_type: Option<DatabaseType>,
    /// `-from spire`: the SPIRE datastore's `connection_string` (a SQLite
    /// file, or a PostgreSQL URL or keyword string).
    #[arg(long = "connectionString")]
    pub connection_string: Option<String>,
    /// `-from sled`: the sled datastore's directory (e.g.
    /// `<data_dir>/datastore`).
    #[arg(long = "path")]
    pub path: Option<PathBuf>,
    /// This (Spinel) server's config file: its trust domain and datastore.
    #[arg(long = "config", default_value = "conf/server/server.conf")]
    pub config: PathBuf,
    /// Expand environment variables in the config file.
    #[arg(long = "expandEnv", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = spinel_config::flags::parse_go_bool)]
    pub expand_env: bool,
}

fn parse_database_type(value: &str) -> Result<DatabaseType, String> {
    match value {
        "sqlite3" => Ok(DatabaseType::Sqlite),
        "postgres" => Ok(DatabaseType::Postgres),
        other => Err(format!(
            "{other:?} is not supported: use sqlite3 or postgres (SPIRE's mysql datastores are not read)"
        )),
    }
}

/// Runs a `datastore` subcommand.
pub async fn run(cmd: DatastoreCommand) -> anyhow::Result<()> {
    match cmd {
        DatastoreCommand::Import(args) => import_from(&args).await,
    }
}

async fn import_from(args: &ImportArgs) -> anyhow::Result<()> {
    let config = config::load(
        &args.config,
        &Overrides {
            expand_env: args.expand_env,
            ..Overrides::default()
        },
    )?;
    let data = match args.from.as_str() {
        "sled" => read_sled(args, &config).await?,
        _ => read_spire(args).await?,
    };
    crate::run::create_dir(&config.data_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot create the data directory {}: {e}",
            config.data_dir.display()
        )
    })?;
    let target = crate::run::open_datastore(&config.plugins.datastore)
        .await
        .map_err(|e| {
            anyhow::anyhow!("{e} (a sled datastore is one process's: stop the server first)")
        })?;
    let now = spinel_spiffe::clock::to_unix_seconds(spinel_spiffe::Clock::system().now());
    let report = import::import(data, target.as_ref(), &config.trust_domain, now).await?;
    print!("{report}");
    Ok(())
}

async fn read_spire(args: &ImportArgs) -> anyhow::Result<import::Records> {
    let (Some(database_type), Some(connection_string)) =
        (args.database_type, args.connection_string.as_deref())
    else {
        anyhow::bail!("-from spire needs -databaseType and -connectionString");
    };
    let pool = spire::connect(database_type, connection_string).await?;
    let data = spire::read(&pool, database_type).await;
    pool.close().await;
    let data = data?;
    match data.schema_version {
        Some(v) if spire::KNOWN_SCHEMA_VERSIONS.contains(&v) => {}
        Some(v) => eprintln!(
            "warning: the SPIRE datastore is at schema version {v}; this import knows versions {}..={} (SPIRE 1.11 to 1.13): check the result",
            spire::KNOWN_SCHEMA_VERSIONS.start(),
            spire::KNOWN_SCHEMA_VERSIONS.end()
        ),
        None => eprintln!("warning: the SPIRE datastore has no schema version: check the result"),
    }
    Ok(data)
}

/// This server's sled datastore, with its CA journal (named by the server
/// ID in `data_dir`, or the journal kept before journals were per server).
async fn read_sled(
    args: &ImportArgs,
    config: &config::ServerConfig,
) -> anyhow::Result<import::Records> {
    let Some(path) = &args.path else {
        anyhow::bail!("-from sled needs -path (the sled datastore's directory)");
    };
    if !path.is_dir() {
        anyhow::bail!("{}: no sled datastore there", path.display());
    }
    if let crate::config::DataStoreConfig::Sled { path: target } = &config.plugins.datastore {
        if target == path {
            anyhow::bail!(
                "{} is the datastore {} names: point -config at the server.conf with the new DataStore",
                path.display(),
                args.config.display()
            );
        }
    }
    let source = crate::datastore::sled::SledDataStore::open(path).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e} (a sled datastore is one process's: stop the server first)",
            path.display()
        )
    })?;
    let server_id = crate::run::server_id(&config.data_dir)?;
    let data = import::read_datastore(&source, &server_id).await?;
    if data.ca_journal.is_none() {
        eprintln!(
            "warning: no CA journal for server {server_id} in {}: the server will make a new CA",
            path.display()
        );
    }
    eprintln!("join tokens are not copied (they are short-lived): make new ones");
    Ok(data)
}
