//! Where the Debian archive is: `KC_DEBIAN_MIRROR` (and `KC_DEBIAN_SECURITY_MIRROR`), else the
//! host's apt sources. No archive host name is written in this code.

use std::path::Path;

use anyhow::{bail, Result};

/// Base URLs of the two archives kernels come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// The main archive (`.../debian`), serving every suite but `*-security`.
    pub main: String,
    /// The security archive (`.../debian-security`), serving `*-security` suites.
    pub security: String,
}

impl Mirror {
    pub fn base_for(&self, suite: &str) -> &str {
        if suite.ends_with("-security") {
            &self.security
        } else {
            &self.main
        }
    }

    pub fn url(&self, suite: &str, path: &str) -> String {
        format!("{}/{}", self.base_for(suite), path.trim_start_matches('/'))
    }

    /// From the environment, else from the host's apt configuration.
    pub fn discover() -> Result<Self> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let from_apt = || -> Vec<(String, Vec<String>)> {
            let mut entries = Vec::new();
            let dir = Path::new("/etc/apt/sources.list.d");
            let mut files: Vec<_> = std::fs::read_dir(dir)
                .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            files.sort();
            for f in files {
                let Ok(text) = std::fs::read_to_string(&f) else {
                    continue;
                };
                match f.extension().and_then(|e| e.to_str()) {
                    Some("sources") => entries.extend(parse_deb822(&text)),
                    Some("list") => entries.extend(parse_one_line(&text)),
                    _ => {}
                }
            }
            if let Ok(text) = std::fs::read_to_string("/etc/apt/sources.list") {
                entries.extend(parse_one_line(&text));
            }
            entries
        };
        let main_env = env("KC_DEBIAN_MIRROR");
        let sec_env = env("KC_DEBIAN_SECURITY_MIRROR");
        let entries = if main_env.is_some() && sec_env.is_some() {
            Vec::new()
        } else {
            from_apt()
        };
        let main = match main_env {
            Some(m) => m,
            None => match pick(&entries, false) {
                Some(m) => m,
                None => bail!(
                    "no Debian mirror known: set KC_DEBIAN_MIRROR to the archive's base URL \
                     (the URL that holds dists/ and pool/), or configure one in /etc/apt/sources.list[.d]"
                ),
            },
        };
        let main = main.trim_end_matches('/').to_string();
        let security = sec_env
            .or_else(|| pick(&entries, true))
            .map(|s| s.trim_end_matches('/').to_string())
            .unwrap_or_else(|| sibling_security(&main));
        Ok(Self { main, security })
    }
}

/// `http://host/debian` → `http://host/debian-security`, the archive's usual layout.
fn sibling_security(main: &str) -> String {
    format!("{main}-security")
}

fn pick(entries: &[(String, Vec<String>)], security: bool) -> Option<String> {
    entries
        .iter()
        .find(|(_, suites)| suites.iter().any(|s| s.ends_with("-security") == security))
        .map(|(uri, _)| uri.clone())
}

fn usable(uri: &str) -> bool {
    uri.starts_with("http://") || uri.starts_with("https://")
}

/// deb822 `.sources` stanzas with `Types: deb`: (URI, suites) pairs.
pub fn parse_deb822(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut types = Vec::new();
        let mut uris = Vec::new();
        let mut suites = Vec::new();
        let mut enabled = true;
        for line in stanza.lines().filter(|l| !l.trim_start().starts_with('#')) {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let words = || v.split_whitespace().map(str::to_string).collect::<Vec<_>>();
            match k.trim().to_ascii_lowercase().as_str() {
                "types" => types = words(),
                "uris" => uris = words(),
                "suites" => suites = words(),
                "enabled" => enabled = v.trim() != "no",
                _ => {}
            }
        }
        if enabled && types.iter().any(|t| t == "deb") {
            for uri in uris.into_iter().filter(|u| usable(u)) {
                out.push((uri, suites.clone()));
            }
        }
    }
    out
}

/// One-line `deb [options] URI suite components...` entries.
pub fn parse_one_line(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line.strip_prefix("deb ") else {
            continue;
        };
        let rest = rest.trim_start();
        let rest = if rest.starts_with('[') {
            rest.split_once(']').map_or("", |(_, r)| r)
        } else {
            rest
        };
        let mut words = rest.split_whitespace();
        if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
            if usable(uri) {
                out.push((uri.to_string(), vec![suite.to_string()]));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_sources() {
        let text = "Types: deb\n# a comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n\
                    Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\n\
                    Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n\
                    Types: deb\nEnabled: no\nURIs: http://off.example/debian\nSuites: sid\n";
        let e = parse_deb822(text);
        assert_eq!(e.len(), 2);
        assert_eq!(pick(&e, false).unwrap(), "http://mirror.example/debian");
        assert_eq!(
            pick(&e, true).unwrap(),
            "http://mirror.example/debian-security"
        );
    }

    #[test]
    fn one_line_sources() {
        let text = "# deb http://commented.example/debian sid main\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main\n\
                    deb cdrom:[Debian]/ bookworm main\n\
                    deb http://m.example/debian-security bookworm-security main\n";
        let e = parse_one_line(text);
        assert_eq!(e.len(), 2);
        assert_eq!(pick(&e, false).unwrap(), "http://m.example/debian");
        assert_eq!(pick(&e, true).unwrap(), "http://m.example/debian-security");
    }

    #[test]
    fn urls_per_suite() {
        let m = Mirror {
            main: "http://m/debian".into(),
            security: sibling_security("http://m/debian"),
        };
        assert_eq!(
            m.url("bookworm", "/pool/x.deb"),
            "http://m/debian/pool/x.deb"
        );
        assert_eq!(
            m.url("bullseye-security", "dists/x"),
            "http://m/debian-security/dists/x"
        );
    }
}
