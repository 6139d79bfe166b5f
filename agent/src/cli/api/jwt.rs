//! `api fetch jwt` and `api validate jwt`, printed as SPIRE's CLI does.

use anyhow::{bail, Context as _};
use serde_json::{json, Map, Value};
use spinel_proto::workload::{
    JwtBundlesRequest, JwtBundlesResponse, JwtsvidRequest, JwtsvidResponse, ValidateJwtsvidRequest,
};
use tonic::Code;

use super::format::{bytes_json, struct_json};
use super::{FetchJwtArgs, Output, ValidateJwtArgs};
use crate::workload_client::{self as client, status_error};

/// Audiences from repeated and comma-separated `-audience` values.
fn audiences(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}

fn svids_json(resp: &JwtsvidResponse) -> Value {
    json!({
        "svids": resp.svids.iter().map(|s| json!({
            "spiffe_id": s.spiffe_id,
            "svid": s.svid,
            "hint": s.hint,
        })).collect::<Vec<_>>(),
    })
}

fn bundles_json(resp: &JwtBundlesResponse) -> Value {
    let bundles: Map<String, Value> = resp
        .bundles
        .iter()
        .map(|(k, v)| (k.clone(), bytes_json(v)))
        .collect();
    json!({ "bundles": bundles })
}

/// SPIRE's pretty form: each token (and hint), then each bundle.
fn pretty(svids: &JwtsvidResponse, bundles: &JwtBundlesResponse) -> String {
    let mut out = String::new();
    for s in &svids.svids {
        out.push_str(&format!("token({}):\n\t{}\n", s.spiffe_id, s.svid));
        if !s.hint.is_empty() {
            out.push_str(&format!("hint({}):\n\t{}\n", s.spiffe_id, s.hint));
        }
    }
    let mut sorted: Vec<_> = bundles.bundles.iter().collect();
    sorted.sort();
    for (td, jwks) in sorted {
        out.push_str(&format!(
            "bundle({td}):\n\t{}\n",
            String::from_utf8_lossy(jwks)
        ));
    }
    out
}

/// `api fetch jwt`.
pub(crate) async fn fetch(args: FetchJwtArgs) -> anyhow::Result<()> {
    let audience = audiences(&args.audience);
    if audience.is_empty() {
        bail!("audience must be specified");
    }
    let socket = client::socket_path(args.common.socket_path.as_deref())?;
    let timeout = args.common.timeout;
    let (svids, bundles) = client::with_timeout(timeout, "fetching JWT-SVIDs", async {
        let mut client = client::connect(&socket, timeout).await?;
        let bundles = client
            .fetch_jwt_bundles(JwtBundlesRequest {})
            .await
            .map_err(|s| status_error("failed to receive JWT bundles", &s))?
            .into_inner()
            .message()
            .await
            .map_err(|s| status_error("failed to receive JWT bundles", &s))?
            .context("the Workload API closed the JWT bundle stream without a response")?;
        let svids = client
            .fetch_jwtsvid(JwtsvidRequest {
                audience,
                spiffe_id: args.spiffe_id.clone().unwrap_or_default(),
            })
            .await
            .map_err(|s| status_error("fetching JWT-SVIDs", &s))?
            .into_inner();
        Ok((svids, bundles))
    })
    .await?;
    match args.output {
        Output::Json => println!(
            "{}",
            Value::Array(vec![svids_json(&svids), bundles_json(&bundles)])
        ),
        Output::Pretty => print!("{}", pretty(&svids, &bundles)),
    }
    Ok(())
}

/// `api validate jwt`.
pub(crate) async fn validate(args: ValidateJwtArgs) -> anyhow::Result<()> {
    let audience = args.audience.unwrap_or_default();
    if audience.is_empty() {
        bail!("audience must be specified");
    }
    let svid = args.svid.unwrap_or_default();
    if svid.is_empty() {
        bail!("svid must be specified");
    }
    let socket = client::socket_path(args.common.socket_path.as_deref())?;
    let timeout = args.common.timeout;
    let resp = client::with_timeout(timeout, "validating the JWT-SVID", async {
        let mut client = client::connect(&socket, timeout).await?;
        client
            .validate_jwtsvid(ValidateJwtsvidRequest { audience, svid })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| {
                if s.code() == Code::InvalidArgument {
                    anyhow::anyhow!("SVID is not valid: {}", s.message())
                } else {
                    status_error("unable to validate JWT SVID", &s)
                }
            })
    })
    .await?;
    let claims = resp
        .claims
        .as_ref()
        .map(struct_json)
        .unwrap_or_else(|| Value::Object(Map::new()));
    match args.output {
        Output::Json => println!(
            "{}",
            json!({ "spiffe_id": resp.spiffe_id, "claims": claims })
        ),
        Output::Pretty => {
            println!("SVID is valid.");
            println!("SPIFFE ID : {}", resp.spiffe_id);
            println!("Claims    : {claims}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audiences_split_on_commas() {
        let got = audiences(&["a,b".into(), "c".into(), " ,".into()]);
        assert_eq!(got, vec!["a", "b", "c"]);
    }
}
