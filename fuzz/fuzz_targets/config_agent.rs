//! Loading `agent.conf`: HCL parsing and the agent's whole config
//! resolution (`AgentConfig::from_file`). Invariants: no panic (every bad
//! input is an error); an error that names a line names one inside the
//! file; loading is deterministic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use spinel_agent::config::{AgentConfig, ConfigError, Overrides};
use spinel_config::hcl::ConfigFile;

fn load(text: &str) -> Result<String, String> {
    let file = ConfigFile::parse(Path::new("agent.conf"), text).map_err(|e| {
        spinel_fuzz::check_error_line(e.line(), text, &e);
        e.to_string()
    })?;
    match AgentConfig::from_file(&file, &Overrides::default()) {
        Ok(config) => Ok(format!("{config:?}")),
        Err(e) => {
            if let ConfigError::File(inner) = &e {
                spinel_fuzz::check_error_line(inner.line(), text, inner);
            }
            Err(e.to_string())
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(text) = spinel_fuzz::text(data) else {
        return;
    };
    let first = load(text);
    assert_eq!(first, load(text), "loading is deterministic");
});
