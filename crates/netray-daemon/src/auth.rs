//! Bearer tokens: read from the token file, or generated there (mode 0600)
//! when it does not exist, and who must show one.
//!
//! The model (docs/daemon.md): anything that changes the kernel or the
//! daemon (POST, DELETE, ...) and the event streams (they attach programs and
//! reveal packets and every process's command line) need
//! `Authorization: Bearer <token>`. Plain reads of rules, interfaces, stats,
//! flows and the OpenAPI document are open on a loopback listen address and
//! need the token on any other. /healthz and /metrics never need it (probes
//! and scrapers carry no secrets).

use std::{
    fs,
    io::{Read, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
};

use anyhow::{bail, Context};
use axum::http::{header, HeaderMap, Method};

use crate::error::ApiError;

/// Reads the token, creating the file with a fresh random token if needed.
/// Returns the token and whether it was generated.
pub fn load_or_create(path: &Path) -> anyhow::Result<(String, bool)> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim().to_string();
            if token.len() < 16 {
                bail!("{}: the token must be at least 16 characters long", path.display());
            }
            if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                bail!("{}: the token must be one line without spaces", path.display());
            }
            if let Ok(md) = fs::metadata(path) {
                if md.permissions().mode() & 0o077 != 0 {
                    eprintln!(
                        "netray daemon: warning: {} is readable by other users; chmod 600 it",
                        path.display()
                    );
                }
            }
            Ok((token, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            let token = random_token()?;
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("creating the token file {}", path.display()))?;
            f.write_all(format!("{token}\n").as_bytes())?;
            f.sync_all()?;
            Ok((token, true))
        }
        Err(e) => Err(e).with_context(|| format!("reading the token file {}", path.display())),
    }
}

/// Shortest token accepted when the daemon listens beyond loopback: 32
/// characters (`openssl rand -hex 32` gives 64; the generated one is 64).
pub const MIN_REMOTE_TOKEN_LEN: usize = 32;

/// Words found in the tokens that examples and manifests ship in place of a
/// real one: a token containing one was never meant to guard anything.
const PLACEHOLDER_WORDS: [&str; 7] = ["changeme", "change-me", "change_me", "placeholder", "replace", "example", "xxxxxxxx"];

/// Refuses a weak token when the API is reachable from other hosts: one
/// shorter than [`MIN_REMOTE_TOKEN_LEN`], a placeholder, or one made of a
/// handful of characters repeated. On loopback any token the file check
/// accepted is fine (only local users reach the port).
pub fn check_strength(token: &str, token_file: &Path, loopback: bool) -> anyhow::Result<()> {
    if loopback {
        return Ok(());
    }
    let lower = token.to_ascii_lowercase();
    let distinct = token.chars().collect::<std::collections::BTreeSet<_>>().len();
    let weakness = if token.len() < MIN_REMOTE_TOKEN_LEN {
        format!("is {} characters long (at least {MIN_REMOTE_TOKEN_LEN} are needed)", token.len())
    } else if let Some(word) = PLACEHOLDER_WORDS.iter().find(|w| lower.contains(*w)) {
        format!("looks like a placeholder (it contains \"{word}\")")
    } else if distinct < 8 {
        format!("uses only {distinct} different characters")
    } else {
        return Ok(());
    };
    bail!(
        "the token in {} {weakness}, and this daemon listens beyond loopback; \
         write a random one with `openssl rand -hex 32 > {}` (mode 0600), or listen on 127.0.0.1",
        token_file.display(),
        token_file.display()
    )
}

fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether a request changes something.
pub fn is_mutating(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Why a request needs the token, or None if it is open to anyone who
/// reaches the port. `open_reads`: the daemon listens on loopback.
pub fn token_needed(method: &Method, path: &str, open_reads: bool) -> Option<&'static str> {
    if is_mutating(method) {
        return Some("this request changes state and needs a bearer token");
    }
    if path == "/healthz" || path == "/metrics" {
        return None;
    }
    if path.starts_with("/v1/events/") {
        return Some("event streams attach programs and reveal packets and command lines: they need a bearer token");
    }
    (!open_reads).then_some("this daemon listens beyond loopback: every request but /healthz and /metrics needs a bearer token")
}

/// Checks the bearer token in constant time; `why` says why it is needed.
pub fn check(headers: &HeaderMap, token: &str, why: &str) -> Result<(), ApiError> {
    let hint = "send `Authorization: Bearer <token>`, the token being the content of the daemon's --token-file";
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized(why).hint(hint));
    };
    let given = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .ok_or_else(|| ApiError::unauthorized("the Authorization header is not `Bearer <token>`").hint(hint))?;
    if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
        return Err(ApiError::unauthorized("wrong bearer token").hint(hint));
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_generated_with_mode_0600_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etc/token");
        let (t1, created) = load_or_create(&path).unwrap();
        assert!(created);
        assert_eq!(t1.len(), 64);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let (t2, created) = load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(t1, t2);
        fs::write(&path, "short").unwrap();
        assert!(load_or_create(&path).is_err());
    }

    #[test]
    fn weak_tokens_are_refused_beyond_loopback_only() {
        let f = Path::new("/etc/netray/token");
        let strong = "3f9a1c0e5b7d2468ace13579bdf02468ace13579bdf02468ace13579bdf0246a";
        assert!(check_strength(strong, f, false).is_ok());
        for (weak, why) in [
            ("short-token-12345678", "at least 32"),
            ("CHANGE-ME-please-0123456789abcdefghij", "placeholder"),
            ("replace-with-a-real-token-0123456789abcdef", "placeholder"),
            ("abababababababababababababababababab", "different characters"),
        ] {
            let e = check_strength(weak, f, false).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains("openssl rand -hex 32") && e.contains("/etc/netray/token"), "{weak}: {e}");
            assert!(check_strength(weak, f, true).is_ok(), "{weak} on loopback");
        }
    }

    #[test]
    fn bearer_check() {
        let mut h = HeaderMap::new();
        assert_eq!(check(&h, "secret-token-123456", "why").unwrap_err().status, 401);
        h.insert(header::AUTHORIZATION, "Bearer nope".parse().unwrap());
        assert_eq!(check(&h, "secret-token-123456", "why").unwrap_err().status, 401);
        h.insert(header::AUTHORIZATION, "Bearer secret-token-123456".parse().unwrap());
        assert!(check(&h, "secret-token-123456", "why").is_ok());
        assert!(is_mutating(&Method::POST) && is_mutating(&Method::DELETE) && !is_mutating(&Method::GET));
    }

    #[test]
    fn who_needs_the_token() {
        let get = &Method::GET;
        for open in [true, false] {
            assert!(token_needed(&Method::POST, "/v1/rules", open).is_some());
            assert!(token_needed(&Method::DELETE, "/v1/interfaces/x", open).is_some());
            assert!(token_needed(get, "/v1/events/packets", open).is_some());
            assert!(token_needed(get, "/v1/events/exec", open).is_some());
            assert!(token_needed(get, "/healthz", open).is_none());
            assert!(token_needed(get, "/metrics", open).is_none());
        }
        for read in ["/v1/rules", "/v1/rules/1", "/v1/stats", "/v1/flows", "/v1/interfaces", "/openapi.json", "/nope"] {
            assert!(token_needed(get, read, true).is_none(), "{read}");
            assert!(token_needed(get, read, false).is_some(), "{read}");
        }
    }
}
