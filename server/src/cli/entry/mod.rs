//! `spinel-server entry create|update|delete|show|count`: registration
//! entries through the server's `spire.api.server.entry.v1.Entry` API, with
//! SPIRE's flags, checks and output.
//!
//! - [`args`]: the flags, their checks and the requests they build (no I/O);
//! - [`data`]: the `-data` / `-file` JSON files;
//! - [`print`]: SPIRE's pretty layout.
//!
//! Flags are checked before the socket is opened, so a bad flag is reported
//! the same whether or not a server runs.

mod args;
mod data;
mod json;
mod print;
#[cfg(test)]
mod print_tests;
#[cfg(test)]
mod tests;

use std::io::{self, Write};

use spinel_proto::spire::api::server::entry::v1::{
    entry_client::EntryClient, BatchCreateEntryRequest, BatchDeleteEntryRequest,
    BatchUpdateEntryRequest, GetEntryRequest, ListEntriesResponse,
};
use spinel_proto::spire::api::types::Entry;
use tonic::transport::Channel;

use crate::cli::admin_client::{connect_admin, AdminArgs, AdminClientError, OutputFormat};
use crate::cli::output::print_proto_json;

pub use args::{CountArgs, CreateArgs, DeleteArgs, DeleteTarget, ShowArgs, UpdateArgs};
use print::Printed;

/// `entry` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum EntryCommand {
    /// Creates registration entries.
    Create(CreateArgs),
    /// Updates registration entries.
    Update(UpdateArgs),
    /// Deletes registration entries.
    Delete(DeleteArgs),
    /// Displays configured registration entries.
    Show(ShowArgs),
    /// Counts registration entries.
    Count(CountArgs),
}

/// Runs an `entry` subcommand.
pub async fn run(cmd: EntryCommand) -> anyhow::Result<()> {
    match cmd {
        EntryCommand::Create(args) => create(&args).await?,
        EntryCommand::Update(args) => update(&args).await?,
        EntryCommand::Delete(args) => delete(&args).await?,
        EntryCommand::Show(args) => show(&args).await?,
        EntryCommand::Count(args) => count(&args).await?,
    }
    Ok(())
}

async fn client(common: &AdminArgs) -> Result<EntryClient<Channel>, AdminClientError> {
    Ok(EntryClient::new(connect_admin(&common.socket_path).await?))
}

/// Writes `printed` and turns a batch failure into the command's error.
fn emit(printed: Printed) -> Result<(), AdminClientError> {
    print!("{}", printed.stdout);
    let _ = io::stdout().flush();
    eprint!("{}", printed.stderr);
    match printed.failure {
        Some(summary) => Err(AdminClientError::BatchFailed(summary)),
        None => Ok(()),
    }
}

/// The entries `-data` names, or the one the flags describe.
fn entries_from(
    data: Option<&std::path::PathBuf>,
    from_flags: impl FnOnce() -> Result<Entry, AdminClientError>,
) -> Result<Vec<Entry>, AdminClientError> {
    match data {
        Some(path) => {
            let json = data::read_input("-data", path, &mut io::stdin().lock())?;
            data::parse_entries("-data", path, &json)
        }
        None => Ok(vec![from_flags()?]),
    }
}

async fn create(args: &CreateArgs) -> Result<(), AdminClientError> {
    let data = args.data_file()?;
    let entries = entries_from(data, || args.entry())?;
    if args.flags.ttl.is_some() {
        eprintln!("Warning: -ttl is deprecated; use -x509SVIDTTL");
    }
    let mut client = client(&args.common).await?;
    let mut resp = client
        .batch_create_entry(BatchCreateEntryRequest {
            entries: entries.clone(),
            output_mask: None,
        })
        .await
        .map_err(AdminClientError::rpc)?
        .into_inner();
    // The API leaves failed entries out of the results: show what was asked.
    for (result, asked) in resp.results.iter_mut().zip(&entries) {
        if result.status.as_ref().is_some_and(|s| s.code != 0) && result.entry.is_none() {
            result.entry = Some(asked.clone());
        }
    }
    let printed = print::create_results(&resp, &entries);
    match args.common.output {
        OutputFormat::Pretty => emit(printed),
        OutputFormat::Json => {
            print_proto_json(&resp, "spire.api.server.entry.v1.BatchCreateEntryResponse")?;
            printed
                .failure
                .map_or(Ok(()), |f| Err(AdminClientError::BatchFailed(f)))
        }
    }
}

async fn update(args: &UpdateArgs) -> Result<(), AdminClientError> {
    let data = args.data_file()?;
    let mut entries = entries_from(data, || args.entry())?;
    if args.flags.ttl.is_some() {
        eprintln!("Warning: -ttl is deprecated; use -x509SVIDTTL");
    }
    let mut client = client(&args.common).await?;
    if data.is_none() && args.attributes_given() {
        if let Some(entry) = entries.first_mut() {
            let stored = client
                .get_entry(GetEntryRequest {
                    id: entry.id.clone(),
                    output_mask: None,
                })
                .await
                .map_err(|s| {
                    AdminClientError::rpc_while(
                        "failed to fetch existing entry to merge additional attributes",
                        s,
                    )
                })?
                .into_inner();
            args.merge_attributes(entry, &stored);
        }
    }
    let mut resp = client
        .batch_update_entry(BatchUpdateEntryRequest {
            entries: entries.clone(),
            input_mask: None,
            output_mask: None,
        })
        .await
        .map_err(AdminClientError::rpc)?
        .into_inner();
    for (result, asked) in resp.results.iter_mut().zip(&entries) {
        if result.status.as_ref().is_some_and(|s| s.code != 0) && result.entry.is_none() {
            result.entry = Some(asked.clone());
        }
    }
    let printed = print::update_results(&resp, &entries);
    match args.common.output {
        OutputFormat::Pretty => emit(printed),
        OutputFormat::Json => {
            print_proto_json(&resp, "spire.api.server.entry.v1.BatchUpdateEntryResponse")?;
            printed
                .failure
                .map_or(Ok(()), |f| Err(AdminClientError::BatchFailed(f)))
        }
    }
}

async fn delete(args: &DeleteArgs) -> Result<(), AdminClientError> {
    let ids = match args.target()? {
        DeleteTarget::Id(id) => vec![id.to_owned()],
        DeleteTarget::File(path) => {
            let json = data::read_input("-file", path, &mut io::stdin().lock())?;
            data::parse_delete_ids("-file", path, &json)?
        }
    };
    let mut client = client(&args.common).await?;
    let resp = client
        .batch_delete_entry(BatchDeleteEntryRequest { ids })
        .await
        .map_err(AdminClientError::rpc)?
        .into_inner();
    let printed = print::delete_results(&resp);
    match args.common.output {
        OutputFormat::Pretty => emit(printed),
        OutputFormat::Json => {
            print_proto_json(&resp, "spire.api.server.entry.v1.BatchDeleteEntryResponse")?;
            printed
                .failure
                .map_or(Ok(()), |f| Err(AdminClientError::BatchFailed(f)))
        }
    }
}

async fn show(args: &ShowArgs) -> Result<(), AdminClientError> {
    let by_id = args.by_id()?;
    let mut client = client(&args.common).await?;
    let mut resp = ListEntriesResponse::default();
    if let Some(id) = by_id {
        let entry = client
            .get_entry(GetEntryRequest {
                id: id.to_owned(),
                output_mask: None,
            })
            .await
            .map_err(|s| AdminClientError::rpc_while(&format!("error fetching entry ID {id}"), s))?
            .into_inner();
        resp.entries.push(entry);
    } else {
        let mut page_token = String::new();
        loop {
            let page = client
                .list_entries(args.list_request(page_token))
                .await
                .map_err(|s| AdminClientError::rpc_while("error fetching entries", s))?
                .into_inner();
            resp.entries.extend(page.entries);
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
    }
    print::sort_entries(&mut resp.entries);
    match args.common.output {
        OutputFormat::Pretty => print!("{}", print::show_entries(&resp)),
        OutputFormat::Json => json::write_entries_json(
            &mut io::BufWriter::with_capacity(1 << 16, io::stdout().lock()),
            &resp.entries,
        )?,
    }
    Ok(())
}

async fn count(args: &CountArgs) -> Result<(), AdminClientError> {
    let request = args.request();
    let mut client = client(&args.common).await?;
    let resp = client
        .count_entries(request)
        .await
        .map_err(AdminClientError::rpc)?
        .into_inner();
    match args.common.output {
        OutputFormat::Pretty => print!("{}", print::count(&resp)),
        OutputFormat::Json => {
            print_proto_json(&resp, "spire.api.server.entry.v1.CountEntriesResponse")?;
        }
    }
    Ok(())
}
