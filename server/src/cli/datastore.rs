//! `spinel-server datastore import -from spire`: reads a SPIRE server's SQL
//! datastore and writes it into the datastore this server's config names
//! (see [`crate::import`]). Run it with the Spinel server stopped when its
//! datastore is sled (one process at a time); on a SQL datastore it may run
//! beside the servers.

use std::path::PathBuf;

use clap::ArgAction;

use crate::config::{self, Overrides};
use crate::datastore::sql::options::DatabaseType;
use crate::import::{self, spire};

/// `datastore` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum DatastoreCommand {
    /// Imports another server's datastore (`-from spire`) into this one's.
    Import(ImportArgs),
}

/// `datastore import` flags.
#[derive(Debug, Clone, clap::Args)]
#[command(args_override_self = true)]
pub struct ImportArgs {
    /// Where the data comes from: `spire` (a SPIRE server's SQL datastore).
    #[arg(long = "from", value_parser = ["spire"])]
    pub from: String,
    /// The SPIRE datastore's `database_type`: `sqlite3` or `postgres`.
    #[arg(long = "databaseType", value_parser = parse_database_type)]
    pub database_type: DatabaseType,
    /// The SPIRE datastore's `connection_string` (a SQLite file, or a
    /// PostgreSQL URL or keyword string).
    #[arg(long = "connectionString")]
    pub connection_string: String,
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
        DatastoreCommand::Import(args) => import_from_spire(&args).await,
    }
}

async fn import_from_spire(args: &ImportArgs) -> anyhow::Result<()> {
    let config = config::load(
        &args.config,
        &Overrides {
            expand_env: args.expand_env,
            ..Overrides::default()
        },
    )?;
    let pool = spire::connect(args.database_type, &args.connection_string).await?;
    let data = spire::read(&pool, args.database_type).await;
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
