//! `[tls]`: the serving certificate and key, and the CA bundle client certificates must chain to.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::problem::Problem;
use super::section::Section;

/// Default certificate chain file.
pub const DEFAULT_CERT_FILE: &str = "tls.crt";
/// Default private key file.
pub const DEFAULT_KEY_FILE: &str = "tls.key";

/// `[tls]`: the serving certificate and optional client CA.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTls {
    /// PEM certificate chain, leaf first.
    pub cert_file: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// PEM CA bundle; when set, clients must present a certificate it signed.
    pub client_ca_file: Option<String>,
}

impl Default for RawTls {
    fn default() -> Self {
        Self {
            cert_file: DEFAULT_CERT_FILE.to_owned(),
            key_file: DEFAULT_KEY_FILE.to_owned(),
            client_ca_file: None,
        }
    }
}

/// `[tls]`
#[derive(Debug, Clone)]
pub struct Tls {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// PEM CA bundle for client certificates (mTLS), if required.
    pub client_ca_file: Option<PathBuf>,
}

/// `[tls]`: `None` in plaintext mode (`listen.plaintext`), where a client CA is a mistake; else
/// both files named.
pub(super) fn validate(raw: &RawTls, plaintext: bool, p: &mut Vec<Problem>) -> Option<Tls> {
    let tls = if plaintext {
        None
    } else {
        for (key, v) in [
            ("tls.cert_file", &raw.cert_file),
            ("tls.key_file", &raw.key_file),
        ] {
            if v.trim().is_empty() {
                p.push(Problem::new(key, "must not be empty"));
            }
        }
        Some(Tls {
            cert_file: PathBuf::from(&raw.cert_file),
            key_file: PathBuf::from(&raw.key_file),
            client_ca_file: raw.client_ca_file.as_ref().map(PathBuf::from),
        })
    };
    if plaintext && raw.client_ca_file.is_some() {
        p.push(Problem::new(
            "tls.client_ca_file",
            "client certificates need TLS; remove it or set listen.plaintext = false",
        ));
    }
    tls
}

/// TLS on or off is decided at start; the files reload live. The client CA is read by a reload;
/// the certificate pair has its own watch in the TLS part.
impl Section for Option<Tls> {
    fn restart_keys(&self, next: &Self, keys: &mut Vec<&'static str>) {
        if self.is_some() != next.is_some() {
            keys.push("tls");
        }
    }

    fn named_files(&self, files: &mut Vec<PathBuf>) {
        files.extend(self.as_ref().and_then(|t| t.client_ca_file.clone()));
    }
}
