//! `spinel-mtls-client`: see the crate docs.
//!
//! Prints one line per answer: `reply <server serial> <the server's line>`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Parser;
use rustls::pki_types::ServerName;
use spinel_example_mtls::{serial_of, source, spiffe_id_of};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Flags.
#[derive(Debug, Parser)]
struct Args {
    /// The server's address.
    #[arg(long)]
    connect: String,
    /// The SPIFFE ID the server must present.
    #[arg(long)]
    server_id: String,
    /// Connections to open, one after the other.
    #[arg(long, default_value_t = 1)]
    connections: u32,
    /// Pings per connection.
    #[arg(long, default_value_t = 1)]
    pings: u32,
    /// Pause between pings, in milliseconds.
    #[arg(long, default_value_t = 0)]
    interval_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let source = source().await?;
    let config = spiffe_rustls::mtls_client(source)
        .authorize(spiffe_rustls::exact([args.server_id.as_str()])?)
        .build()?;
    let connector = TlsConnector::from(Arc::new(config));
    // SPIFFE authentication is by SPIFFE ID, not host name: the name is
    // only sent as SNI.
    let name = ServerName::try_from("spiffe-server")?;
    for c in 0..args.connections {
        let tcp = TcpStream::connect(&args.connect)
            .await
            .with_context(|| format!("connecting to {}", args.connect))?;
        let tls = connector
            .connect(name.clone(), tcp)
            .await
            .context("TLS handshake")?;
        let server = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| (spiffe_id_of(c.as_ref()), serial_of(c.as_ref())));
        let Some((Ok(server_id), serial)) = server else {
            bail!("the server presented no SPIFFE ID");
        };
        println!("connected {c} to {server_id}");
        let (read, mut write) = tokio::io::split(tls);
        let mut lines = BufReader::new(read).lines();
        for p in 0..args.pings {
            write
                .write_all(format!("ping {c}.{p}\n").as_bytes())
                .await?;
            let line = lines
                .next_line()
                .await?
                .context("the server closed the connection")?;
            println!("reply {serial} {line}");
            if args.interval_ms > 0 {
                tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
            }
        }
    }
    Ok(())
}
