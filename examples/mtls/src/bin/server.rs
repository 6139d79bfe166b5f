//! `spinel-mtls-server`: see the crate docs.

use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use spinel_example_mtls::{pong, source, spiffe_id_of};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Flags.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on (port 0: any free port, printed).
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: String,
    /// SPIFFE IDs of the clients allowed in (repeat for more).
    #[arg(long, required = true)]
    allow: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let source = source().await?;
    let own = source
        .svid()
        .context("no X509-SVID from the agent")?
        .spiffe_id()
        .to_string();
    let config = spiffe_rustls::mtls_server(source)
        .authorize(spiffe_rustls::exact(args.allow.iter().map(String::as_str))?)
        .build()?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    println!("{own} listening on {}", listener.local_addr()?);
    loop {
        let (tcp, peer) = listener.accept().await?;
        let (acceptor, own) = (acceptor.clone(), own.clone());
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(e) => {
                    println!("refused {peer}: {e}");
                    return;
                }
            };
            let client = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| spiffe_id_of(c.as_ref()));
            let client = match client {
                Some(Ok(id)) => id,
                _ => {
                    println!("refused {peer}: no client SPIFFE ID");
                    return;
                }
            };
            println!("accepted {client} from {peer}");
            let (read, mut write) = tokio::io::split(tls);
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Some(n) = line.strip_prefix("ping ") else {
                    break;
                };
                if write
                    .write_all(pong(n, &own, &client).as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
    }
}
