//! Loading `server.conf`: HCL parsing and the server's whole config
//! resolution (`server::config::from_file`), plus `-expandEnv`
//! substitution. Invariants: no panic (every bad input is an error);
//! an error that names a line names one inside the file; loading is
//! deterministic; `expand_env` leaves text without `$` alone and never
//! grows text when no variable is set.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use spinel_config::hcl::{expand_env, ConfigFile};
use spinel_server::config::{from_file, ConfigLoadError, Overrides};

fn load(text: &str) -> Result<String, String> {
    let file = ConfigFile::parse(Path::new("server.conf"), text).map_err(|e| {
        spinel_fuzz::check_error_line(e.line(), text, &e);
        e.to_string()
    })?;
    match from_file(&file, &Overrides::default()) {
        Ok(config) => Ok(format!("{config:?}")),
        Err(e) => {
            if let ConfigLoadError::File(inner) = &e {
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

    let unset = expand_env(text, |_| None);
    assert!(unset.len() <= text.len());
    if !text.contains('$') {
        assert_eq!(unset, text);
    }
    let _ = load(&expand_env(text, |name| Some(format!("\"{name}\""))));
});
