//! Where the servers are: SPIRE's `server_address` + `server_port`, or
//! Spinel's `server_addresses` list, as [`ServerTarget`]s.
//!
//! ```hcl
//! agent {
//!     server_addresses = ["spinel-a.example:8081", "10.0.0.12", "[fd00::12]:8443"]
//!     server_port = "8081"   # the port of an entry that names none
//! }
//! ```
//!
//! Either key may be used, not both. A host name that resolves to several
//! addresses stands for several servers (`client/servers.rs` tries them
//! all). The `-serverAddress` flag replaces both keys.

use std::fmt;

/// One configured server: a host name or IP address, and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTarget {
    /// A host name (resolved at every connect) or an IP address literal,
    /// without brackets.
    pub host: String,
    /// The TCP port.
    pub port: u16,
}

impl ServerTarget {
    /// Parses `host`, `host:port`, `ipv4:port`, `[ipv6]:port`, `[ipv6]` or a
    /// bare IPv6 address; `default_port` applies when no port is given.
    pub fn parse(text: &str, default_port: u16) -> Result<Self, String> {
        let text = text.trim();
        let bad = |why: &str| format!("{text:?} is not a server address: {why}");
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(|| bad("an unclosed `[`"))?;
            match after {
                "" => (host, None),
                _ => {
                    let port = after
                        .strip_prefix(':')
                        .ok_or_else(|| bad("text after `]` that is not `:port`"))?;
                    (host, Some(port))
                }
            }
        } else {
            match text.matches(':').count() {
                0 => (text, None),
                1 => text
                    .split_once(':')
                    .map(|(h, p)| (h, Some(p)))
                    .ok_or_else(|| bad("no host"))?,
                // A bare IPv6 address: no port can be told apart.
                _ => (text, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        if host.contains(char::is_whitespace) || host.contains(['/', '[', ']']) {
            return Err(bad("the host has a character a host name cannot have"));
        }
        if text.starts_with('[') && host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("brackets hold an IPv6 address only"));
        }
        let port = match port {
            None => default_port,
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(bad("the port is not a number from 1 to 65535")),
                Ok(p) => p,
            },
        };
        Ok(ServerTarget {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for ServerTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ServerTarget;

    fn parse(text: &str) -> Result<(String, u16), String> {
        ServerTarget::parse(text, 8081).map(|t| (t.host, t.port))
    }

    #[test]
    fn every_spelling_of_host_and_port() {
        let ok = |text: &str, host: &str, port: u16| {
            assert_eq!(parse(text), Ok((host.to_owned(), port)), "{text}");
        };
        ok("spinel.example", "spinel.example", 8081);
        ok("spinel.example:9000", "spinel.example", 9000);
        ok("10.0.0.1", "10.0.0.1", 8081);
        ok(" 10.0.0.1:443 ", "10.0.0.1", 443);
        ok("[::1]:9000", "::1", 9000);
        ok("[fd00::12]", "fd00::12", 8081);
        ok("fd00::12", "fd00::12", 8081);
    }

    #[test]
    fn malformed_addresses_name_the_problem() {
        for text in [
            "",
            ":8081",
            "host:",
            "host:0",
            "host:65536",
            "host:http",
            "[::1",
            "[::1]x",
            "[not-v6]:80",
            "a b:80",
            "http://host",
        ] {
            let err = parse(text).expect_err(text);
            assert!(err.contains("is not a server address"), "{err}");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in ["h.example:1", "10.0.0.1:8081", "[::1]:9000"] {
            let t = ServerTarget::parse(text, 1).unwrap();
            assert_eq!(t.to_string(), text);
            assert_eq!(ServerTarget::parse(&t.to_string(), 1).unwrap(), t);
        }
    }

    /// The keys in a whole agent.conf, and the `-serverAddress` flag.
    mod keys {
        use std::path::Path;

        use spinel_config::hcl::ConfigFile;

        use crate::config::{AgentConfig, ConfigError, Overrides};

        fn load(keys: &str, overrides: &Overrides) -> Result<AgentConfig, ConfigError> {
            let text = format!(
                "agent {{\n trust_domain = \"example.org\"\n data_dir = \"/tmp/x\"\n{keys}\n}}\nplugins {{\n KeyManager \"memory\" {{\n plugin_data {{}}\n }}\n NodeAttestor \"join_token\" {{\n plugin_data {{}}\n }}\n}}\n"
            );
            let file = ConfigFile::parse(Path::new("agent.conf"), &text)?;
            AgentConfig::from_file(&file, overrides)
        }

        fn servers(keys: &str) -> Vec<String> {
            load(keys, &Overrides::default())
                .unwrap()
                .servers
                .iter()
                .map(ToString::to_string)
                .collect()
        }

        #[test]
        fn spire_keys_and_the_list() {
            assert_eq!(
                servers("server_address = \"s.example\""),
                ["s.example:8081"]
            );
            assert_eq!(
                servers("server_address = \"::1\"\n server_port = 9000"),
                ["[::1]:9000"]
            );
            assert_eq!(
                servers("server_addresses = [\"a.example\", \"10.0.0.2:9001\", \"[::1]\"]\n server_port = \"9000\""),
                ["a.example:9000", "10.0.0.2:9001", "[::1]:9000"]
            );
        }

        #[test]
        fn the_flag_replaces_both_keys() {
            let flag = Overrides {
                server_address: Some("flag.example".into()),
                server_port: Some(7000),
                ..Default::default()
            };
            let c = load(
                "server_addresses = [\"a.example:1\", \"b.example:2\"]",
                &flag,
            )
            .unwrap();
            assert_eq!(c.servers.len(), 1);
            assert_eq!(c.servers[0].to_string(), "flag.example:7000");
        }

        #[test]
        fn conflicting_empty_or_bad_lists_are_errors_naming_the_key() {
            let err = |keys: &str| load(keys, &Overrides::default()).unwrap_err().to_string();
            let both = err("server_address = \"a\"\n server_addresses = [\"b\"]");
            assert!(
                both.contains("agent.server_addresses") && both.contains("not both"),
                "{both}"
            );
            let empty = err("server_addresses = []");
            assert!(empty.contains("agent.server_addresses"), "{empty}");
            let bad = err("server_addresses = [\"a:0\"]");
            assert!(
                bad.contains("agent.server_addresses") && bad.contains("\"a:0\""),
                "{bad}"
            );
            let none = err("");
            assert!(
                none.contains("agent.server_address") && none.contains("required"),
                "{none}"
            );
            let typo = err("server_adresses = [\"a\"]");
            assert!(typo.contains("server_adresses"), "{typo}");
        }
    }
}
