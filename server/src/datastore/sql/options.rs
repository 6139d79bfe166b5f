//! What `DataStore "sql"` is told to open: the database type, SPIRE's
//! connection string forms turned into the URLs sqlx reads, and pool
//! settings.
//!
//! Accepted connection strings:
//! - `postgres`: a URL (`postgres://user:pass@host:5432/db?sslmode=...`,
//!   `postgresql://...`) or libpq's keyword form (`dbname=spinel
//!   host=db.example user=spinel sslmode=verify-full`, values may be
//!   single-quoted with `\'` and `\\` escapes);
//! - `sqlite3`: a file path (`./data/datastore.sqlite3`, as SPIRE's stock
//!   `server.conf`), `file:<path>`, or a `sqlite://` URL.
//!
//! A connection string carries a password: nothing here prints one.
//! [`SqlOptions`]'s `Debug` and [`redact`] show `***` in its place.

use std::fmt;
use std::time::Duration;

/// Connection parameters sqlx understands (libpq names), the only ones
/// accepted: an unknown one is an error, not silently dropped.
const PG_KEYWORDS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "application_name",
    "options",
];

/// The database behind `DataStore "sql"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseType {
    /// PostgreSQL (`database_type = "postgres"`): shared by several servers.
    Postgres,
    /// SQLite (`database_type = "sqlite3"`): one file, one server.
    Sqlite,
}

impl DatabaseType {
    /// The `database_type` value naming it.
    pub fn name(self) -> &'static str {
        match self {
            DatabaseType::Postgres => "postgres",
            DatabaseType::Sqlite => "sqlite3",
        }
    }
}

/// Everything needed to open the SQL datastore.
#[derive(Clone, PartialEq, Eq)]
pub struct SqlOptions {
    /// Which database.
    pub database_type: DatabaseType,
    /// Where writes (and reads without a replica) go, as a sqlx URL
    /// ([`connection_url`]).
    pub url: String,
    /// Optional read replica URL: listings and lookups may be served there.
    pub ro_url: Option<String>,
    /// Pool size (default 10).
    pub max_open_conns: Option<u32>,
    /// Accepted for SPIRE compatibility; sqlx's pool has no cap on idle
    /// connections apart from `max_open_conns`, and closes a connection
    /// idle for 10 minutes.
    pub max_idle_conns: Option<u32>,
    /// A connection older than this is closed and replaced.
    pub conn_max_lifetime: Option<Duration>,
    /// Do not create or upgrade the schema; refuse to start unless it is
    /// the version this binary writes.
    pub disable_migration: bool,
    /// Log every SQL statement (at `info`).
    pub log_sql: bool,
}

impl fmt::Debug for SqlOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlOptions")
            .field("database_type", &self.database_type)
            .field("url", &redact(&self.url))
            .field("ro_url", &self.ro_url.as_deref().map(redact))
            .field("max_open_conns", &self.max_open_conns)
            .field("max_idle_conns", &self.max_idle_conns)
            .field("conn_max_lifetime", &self.conn_max_lifetime)
            .field("disable_migration", &self.disable_migration)
            .field("log_sql", &self.log_sql)
            .finish()
    }
}

/// A connection string that cannot be used. Never holds the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConnectionStringError(String);

/// The sqlx URL for a SPIRE-style connection string of `database_type`.
pub fn connection_url(
    database_type: DatabaseType,
    connection_string: &str,
) -> Result<String, ConnectionStringError> {
    let s = connection_string.trim();
    if s.is_empty() {
        return Err(ConnectionStringError("it is empty".into()));
    }
    match database_type {
        DatabaseType::Postgres => postgres_url(s),
        DatabaseType::Sqlite => sqlite_url(s),
    }
}

fn postgres_url(s: &str) -> Result<String, ConnectionStringError> {
    if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        let url = url::Url::parse(s)
            .map_err(|e| ConnectionStringError(format!("not a valid URL: {e}")))?;
        for (key, _) in url.query_pairs() {
            check_keyword(&key)?;
        }
        return Ok(s.to_owned());
    }
    if s.contains("://") {
        return Err(ConnectionStringError(
            "a URL must start with postgres:// or postgresql://".into(),
        ));
    }
    let pairs = parse_keywords(s)?;
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in &pairs {
        check_keyword(key)?;
        query.append_pair(key, value);
    }
    // No authority: sqlx then takes host and port from the parameters, or
    // its libpq-like defaults (PGHOST, the local socket, localhost).
    Ok(format!("postgres:?{}", query.finish()))
}

fn check_keyword(key: &str) -> Result<(), ConnectionStringError> {
    if PG_KEYWORDS.contains(&key) {
        Ok(())
    } else {
        Err(ConnectionStringError(format!(
            "unknown parameter {key:?} (known: {})",
            PG_KEYWORDS.join(", ")
        )))
    }
}

/// libpq's `key=value key='quoted value'` form.
fn parse_keywords(s: &str) -> Result<Vec<(String, String)>, ConnectionStringError> {
    let mut pairs = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(ConnectionStringError(format!(
                "expected `=` after {key:?} (keyword form is `key=value key=value`)"
            )));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => {
                        return Err(ConnectionStringError(format!(
                            "unterminated quoted value of {key:?}"
                        )))
                    }
                    Some('\'') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => {
                            return Err(ConnectionStringError(format!(
                                "unterminated quoted value of {key:?}"
                            )))
                        }
                    },
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(escaped) = chars.next() {
                        value.push(escaped);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

/// Characters escaped in a SQLite path inside a URL: sqlx decodes `%`
/// escapes, and `?`/`#` would end the path.
const PATH_ESCAPES: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b'%')
    .add(b'?')
    .add(b'#')
    .add(b' ');

fn sqlite_url(s: &str) -> Result<String, ConnectionStringError> {
    if s.starts_with("sqlite:") {
        return Ok(s.to_owned());
    }
    let path = s.strip_prefix("file:").unwrap_or(s);
    if path.contains('?') {
        return Err(ConnectionStringError(
            "parameters after `?` are not supported in a sqlite3 path (use a sqlite:// URL for sqlx's)"
                .into(),
        ));
    }
    if path == ":memory:" || path.is_empty() {
        return Err(ConnectionStringError(
            "an in-memory database would lose every write at exit; give a file path".into(),
        ));
    }
    let encoded = percent_encoding::utf8_percent_encode(path, PATH_ESCAPES);
    // mode=rwc: create the file when it is not there yet.
    Ok(format!("sqlite://{encoded}?mode=rwc"))
}

/// The file a sqlite URL from [`connection_url`] names (to create its
/// directory), if it is a plain path.
pub fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite://")?;
    let path = rest.split('?').next().unwrap_or_default();
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .ok()?;
    (!decoded.is_empty()).then(|| std::path::PathBuf::from(decoded.into_owned()))
}

/// `url` with any password replaced by `***`, fit for logs and errors.
pub fn redact(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "<unparsable connection string>".to_owned();
    };
    if parsed.password().is_some() {
        // Only fails for URLs that cannot have a password, which this has.
        let _ = parsed.set_password(Some("***"));
    }
    let has_password = parsed.query_pairs().any(|(k, _)| k == "password");
    if has_password {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "password" {
                    "***".to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

/// A Go duration string (`"30s"`, `"1h30m"`, `"500ms"`), as SPIRE's
/// `conn_max_lifetime`.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("{s:?}: missing unit after a number (ns, us, ms, s, m, h)"))?;
        if number_len == 0 {
            return Err(format!("{s:?}: expected a number"));
        }
        let number: f64 = rest[..number_len]
            .parse()
            .map_err(|_| format!("{s:?}: bad number {:?}", &rest[..number_len]))?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => {
                return Err(format!(
                    "{s:?}: unknown unit {other:?} (ns, us, ms, s, m, h)"
                ))
            }
        };
        total += number * seconds;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|e| format!("{s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_form_becomes_a_url_with_every_parameter() {
        let url = connection_url(
            DatabaseType::Postgres,
            "dbname=spinel host=/run/pg user=spinel password='it''s \\' x' sslmode=verify-full",
        );
        // A doubled quote is not libpq; the value ends at the second quote.
        assert!(url.is_err(), "{url:?}");
        let url = connection_url(
            DatabaseType::Postgres,
            "dbname=spinel host=/run/pg port = 5433 user=spinel password='a b\\'c' sslmode=verify-full",
        )
        .unwrap();
        let parsed = url::Url::parse(&url).unwrap();
        let pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
        let want = [
            ("dbname", "spinel"),
            ("host", "/run/pg"),
            ("port", "5433"),
            ("user", "spinel"),
            ("password", "a b'c"),
            ("sslmode", "verify-full"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(pairs, want);
        assert!(!redact(&url).contains("a+b"), "{}", redact(&url));
        assert!(
            redact(&url).contains("password=***") || redact(&url).contains("password=%2A%2A%2A")
        );
    }

    #[test]
    fn postgres_urls_pass_and_unknown_parameters_are_named() {
        let url = "postgres://spinel:pw@db:5432/spinel?sslmode=require";
        assert_eq!(connection_url(DatabaseType::Postgres, url).unwrap(), url);
        assert_eq!(
            redact(url),
            "postgres://spinel:***@db:5432/spinel?sslmode=require"
        );
        let err = connection_url(DatabaseType::Postgres, "dbname=x connect_timeout=3").unwrap_err();
        assert!(err.to_string().contains("connect_timeout"), "{err}");
        let err = connection_url(DatabaseType::Postgres, "dbname").unwrap_err();
        assert!(err.to_string().contains("`=`"), "{err}");
        let err = connection_url(DatabaseType::Postgres, "mysql://x").unwrap_err();
        assert!(err.to_string().contains("postgres://"), "{err}");
        assert!(connection_url(DatabaseType::Postgres, "  ").is_err());
    }

    #[test]
    fn sqlite_paths_become_urls_that_create_the_file() {
        let url = connection_url(DatabaseType::Sqlite, "./data/datastore.sqlite3").unwrap();
        assert_eq!(url, "sqlite://./data/datastore.sqlite3?mode=rwc");
        assert_eq!(
            sqlite_path(&url).unwrap(),
            std::path::Path::new("./data/datastore.sqlite3")
        );
        let url = connection_url(DatabaseType::Sqlite, "file:/var/lib/a b#1.db").unwrap();
        assert_eq!(url, "sqlite:///var/lib/a%20b%231.db?mode=rwc");
        assert_eq!(
            sqlite_path(&url).unwrap(),
            std::path::Path::new("/var/lib/a b#1.db")
        );
        assert!(connection_url(DatabaseType::Sqlite, ":memory:").is_err());
        assert!(connection_url(DatabaseType::Sqlite, "x.db?_busy_timeout=5").is_err());
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(
            parse_go_duration("1h30m").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            parse_go_duration("1.5s").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(
            parse_go_duration("250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "30", "s", "3x", "1h-2m"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }
}
