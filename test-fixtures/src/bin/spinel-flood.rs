//! `spinel-flood`: opens many silent connections to a listener, as an
//! attacker would, and reports what the listener did with them.
//!
//! ```text
//! spinel-flood (--unix PATH | --tcp HOST:PORT [--tls-ca PEM] [--source-ip IP])
//!              --connections N [--preface] [--hold SECS]
//! ```
//!
//! Each connection is opened (and, with `--tls-ca`, its TLS handshake
//! done, server name `localhost`, ALPN h2), then sends the HTTP/2 client
//! preface and an empty SETTINGS frame if `--preface` is given, and says
//! nothing more. After `--hold` seconds it prints one JSON object:
//! `opened` (connections established), `failed` (connects or handshakes
//! that failed), `closed_by_server` (connections the listener closed while
//! held), `open_at_end`, and `closed_after_ms` (min/median/max of when the
//! closed ones were closed, from their opening). Used by the limit tests
//! (run as another user) and the flood measurements in
//! docs/benchmarks.md.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

#[derive(Debug, Default)]
struct Args {
    unix: Option<PathBuf>,
    tcp: Option<String>,
    tls_ca: Option<PathBuf>,
    source_ip: Option<IpAddr>,
    connections: usize,
    preface: bool,
    hold: Duration,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        hold: Duration::from_secs(5),
        ..Args::default()
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--unix" => args.unix = Some(value()?.into()),
            "--tcp" => args.tcp = Some(value()?),
            "--tls-ca" => args.tls_ca = Some(value()?.into()),
            "--source-ip" => args.source_ip = Some(value()?.parse()?),
            "--connections" => args.connections = value()?.parse()?,
            "--hold" => args.hold = Duration::from_secs_f64(value()?.parse()?),
            "--preface" => args.preface = true,
            other => bail!("unknown flag {other}"),
        }
    }
    if args.unix.is_none() == args.tcp.is_none() {
        bail!("give exactly one of --unix PATH and --tcp HOST:PORT");
    }
    Ok(args)
}

trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

async fn open(args: &Args, tls: Option<&tokio_rustls::TlsConnector>) -> Result<Box<dyn Conn>> {
    if let Some(path) = &args.unix {
        return Ok(Box::new(tokio::net::UnixStream::connect(path).await?));
    }
    let target: SocketAddr = tokio::net::lookup_host(args.tcp.as_deref().unwrap_or_default())
        .await?
        .next()
        .context("no address")?;
    let socket = if target.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if let Some(ip) = args.source_ip {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let tcp = socket.connect(target).await?;
    match tls {
        Some(connector) => {
            let name = ServerName::try_from("localhost")?;
            Ok(Box::new(connector.connect(name, tcp).await?))
        }
        None => Ok(Box::new(tcp)),
    }
}

fn connector(ca: &PathBuf) -> Result<tokio_rustls::TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let tls = args.tls_ca.as_ref().map(connector).transpose()?;
    let deadline = Instant::now() + args.hold;
    let mut tasks = Vec::new();
    let mut failed = 0usize;
    for _ in 0..args.connections {
        let opened_at = Instant::now();
        let mut conn = match open(&args, tls.as_ref()).await {
            Ok(conn) => conn,
            Err(_) => {
                failed += 1;
                continue;
            }
        };
        let preface = args.preface;
        tasks.push(tokio::spawn(async move {
            if preface && conn.write_all(PREFACE).await.is_err() {
                return Some(opened_at.elapsed());
            }
            let mut buf = [0u8; 4096];
            loop {
                match tokio::time::timeout_at(deadline, conn.read(&mut buf)).await {
                    Err(_) => return None,
                    Ok(Ok(0) | Err(_)) => return Some(opened_at.elapsed()),
                    Ok(Ok(_)) => {}
                }
            }
        }));
    }
    let mut closed = Vec::new();
    let mut open_at_end = 0usize;
    for task in tasks {
        match task.await? {
            Some(after) => closed.push(after.as_millis() as u64),
            None => open_at_end += 1,
        }
    }
    closed.sort_unstable();
    let pick = |q: f64| {
        closed
            .get(((closed.len() as f64 - 1.0) * q).round() as usize)
            .copied()
    };
    let report = serde_json::json!({
        "opened": closed.len() + open_at_end,
        "failed": failed,
        "closed_by_server": closed.len(),
        "open_at_end": open_at_end,
        "closed_after_ms": {"min": pick(0.0), "median": pick(0.5), "max": pick(1.0)},
    });
    println!("{report}");
    Ok(())
}
