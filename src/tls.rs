//! The rustls server config: PEM loading, ALPN, optional client certificates, and hot reload.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use notify::RecommendedWatcher;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

pub(crate) use self::stream::TlsStream;
use crate::audit::{self, Audit};
use crate::config;
use crate::metrics::TlsMetrics;

mod stream;

/// Why TLS material could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file held no usable PEM block of the expected kind.
    #[error("{}: {what}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was missing or malformed.
        what: &'static str,
    },
    /// rustls refused the material (unsupported key, key not matching the certificate, bad CA).
    #[error("{context}: {source}")]
    Rustls {
        /// What was being built.
        context: &'static str,
        /// The rustls error.
        #[source]
        source: rustls::Error,
    },
    /// The client CA bundle could not be turned into a verifier.
    #[error("client CA: {0}")]
    ClientCa(#[source] rustls::server::VerifierBuilderError),
    /// The file watcher could not be started.
    #[error("cannot watch certificate files: {0}")]
    Watch(#[source] notify::Error),
}

/// The serving certificate, swapped atomically when the files change.
#[derive(Debug)]
pub(crate) struct CertStore {
    current: ArcSwap<CertifiedKey>,
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// A loaded pair and the certificate's notAfter.
struct Loaded {
    key: CertifiedKey,
    not_after: i64,
    fingerprint: Vec<u8>,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn load_pair(settings: &config::Tls, provider: &CryptoProvider) -> Result<Loaded, TlsError> {
    load_pair_from(settings, provider, read)
}

/// [`load_pair`] over the bytes `read` gives for each file.
fn load_pair_from(
    settings: &config::Tls,
    provider: &CryptoProvider,
    read: impl Fn(&Path) -> Result<Vec<u8>, TlsError>,
) -> Result<Loaded, TlsError> {
    let cert_pem = read(&settings.cert_file)?;
    let key_pem = read(&settings.key_file)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| TlsError::Pem {
            path: settings.cert_file.clone(),
            what: "malformed PEM certificate",
        })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::Pem {
            path: settings.cert_file.clone(),
            what: "no CERTIFICATE block",
        });
    };
    let not_after = x509_parser::parse_x509_certificate(leaf)
        .map(|(_, c)| c.validity().not_after.timestamp())
        .map_err(|_| TlsError::Pem {
            path: settings.cert_file.clone(),
            what: "leaf certificate is not valid X.509",
        })?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::Pem {
        path: settings.key_file.clone(),
        what: "no usable PRIVATE KEY block (PKCS#8, PKCS#1 or SEC1)",
    })?;
    let mut fingerprint = cert_pem;
    fingerprint.extend_from_slice(&key_pem);
    let key = CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Rustls {
        context: "certificate and key",
        source,
    })?;
    Ok(Loaded {
        key,
        not_after,
        fingerprint,
    })
}

fn client_verifier(
    ca_file: &Path,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let pem = read(ca_file)?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|_| TlsError::Pem {
            path: ca_file.to_owned(),
            what: "malformed PEM certificate",
        })?;
        roots.add(cert).map_err(|source| TlsError::Rustls {
            context: "client CA",
            source,
        })?;
    }
    if roots.is_empty() {
        return Err(TlsError::Pem {
            path: ca_file.to_owned(),
            what: "no CERTIFICATE block",
        });
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(TlsError::ClientCa)
}

/// Builds the server config for TLS 1.2/1.3 with ALPN h2 and http/1.1 over the certificate store.
fn server_config(
    store: &Arc<CertStore>,
    client_ca: Option<&Path>,
    provider: &Arc<CryptoProvider>,
) -> Result<ServerConfig, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|source| TlsError::Rustls {
            context: "protocol versions",
            source,
        })?;
    let builder = match client_ca {
        Some(ca) => builder.with_client_cert_verifier(client_verifier(ca, provider)?),
        None => builder.with_no_client_auth(),
    };
    let mut server_config = builder.with_cert_resolver(store.clone());
    server_config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(server_config)
}

/// The TLS settings of one live generation: the server config each handshake takes, the files it
/// came from, and the certificate store it serves from. A reload builds the next one; a generation
/// whose pair did not move shares the store (and so any certificate rotation) with the last.
pub(crate) struct TlsGeneration {
    server_config: Arc<ServerConfig>,
    settings: config::Tls,
    store: Arc<CertStore>,
    /// The notAfter of a pair this generation loaded, set on the metric once it is published.
    loaded_not_after: Option<i64>,
}

impl TlsGeneration {
    /// This generation's server config, for one connection's handshake ([`TlsStream::accept`]).
    pub(crate) fn acceptor(&self) -> Arc<ServerConfig> {
        self.server_config.clone()
    }
}

/// The certificate machinery of the main listener that outlives generations: the crypto provider,
/// the TLS metrics, the audit log, and the watcher that swaps a rotated pair into the store of
/// the generation being served.
pub(crate) struct Tls {
    provider: Arc<CryptoProvider>,
    metrics: TlsMetrics,
    audit: Audit,
}

impl Tls {
    /// Loads the files named by `settings`: the machinery, and the first generation with a server
    /// config for TLS 1.2/1.3 with ALPN h2 and http/1.1.
    pub(crate) fn load(
        settings: &config::Tls,
        metrics: TlsMetrics,
    ) -> Result<(Self, TlsGeneration), TlsError> {
        let tls = Self {
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            metrics,
            audit: Audit::default(),
        };
        let first = tls.generation(settings, None)?;
        tls.published(&first);
        Ok((tls, first))
    }

    /// The same machinery, writing each certificate reload to `audit`.
    #[must_use]
    pub(crate) fn with_audit(mut self, audit: Audit) -> Self {
        self.audit = audit;
        self
    }

    /// Builds the generation a reloaded `[tls]` asks for, after `running`: a new client CA bundle
    /// (or none) rebuilds the server config, and new certificate paths load their pair into a
    /// store of its own. Nothing is applied until the generation is published; open connections
    /// keep the config they were accepted with.
    ///
    /// # Errors
    /// [`TlsError`] when a file is unusable; the running generation stays then.
    pub(crate) fn generation(
        &self,
        settings: &config::Tls,
        running: Option<&TlsGeneration>,
    ) -> Result<TlsGeneration, TlsError> {
        let kept = running.filter(|r| {
            settings.cert_file == r.settings.cert_file && settings.key_file == r.settings.key_file
        });
        let (store, loaded_not_after) = match kept {
            Some(running) => (running.store.clone(), None),
            None => {
                let loaded = load_pair(settings, &self.provider)?;
                let store = Arc::new(CertStore {
                    current: ArcSwap::from_pointee(loaded.key),
                });
                (store, Some(loaded.not_after))
            }
        };
        let server_config =
            server_config(&store, settings.client_ca_file.as_deref(), &self.provider)?;
        Ok(TlsGeneration {
            server_config: Arc::new(server_config),
            settings: settings.clone(),
            store,
            loaded_not_after,
        })
    }

    /// Notes a generation now being served: a pair it loaded sets the expiry metric.
    pub(crate) fn published(&self, generation: &TlsGeneration) {
        if let Some(not_after) = generation.loaded_not_after {
            self.metrics.not_after.set(not_after as f64);
        }
    }

    /// Watches the directories holding the cert and key of the generation served at start; once a
    /// change has settled (unchanged for `settle()`), loads the pair of the generation `current()`
    /// serves, as it settled, and swaps it into that generation's store. A broken pair keeps the
    /// old one, logs an error and counts a failed reload. The returned watcher must be kept alive
    /// for as long as reloads are wanted.
    pub(crate) fn watch(
        self: &Arc<Self>,
        current: impl Fn() -> Option<Arc<TlsGeneration>> + Send + 'static,
        settle: impl Fn() -> Duration + Send + 'static,
    ) -> Result<Option<RecommendedWatcher>, TlsError> {
        let Some(first) = current() else {
            return Ok(None);
        };
        let this = Arc::clone(self);
        let mut fingerprint = load_pair(&first.settings, &self.provider)
            .map(|l| l.fingerprint)
            .unwrap_or_default();
        crate::watch::watch(
            vec![
                first.settings.cert_file.clone(),
                first.settings.key_file.clone(),
            ],
            settle,
            move |settled| {
                if let Some(generation) = current() {
                    this.reload(&generation, settled, &mut fingerprint);
                }
            },
        )
        .map(Some)
        .map_err(TlsError::Watch)
    }

    /// Loads the pair of `generation` from what settled (a file a reload moved the pair to is
    /// read from disk) into its store.
    fn reload(
        &self,
        generation: &TlsGeneration,
        settled: &crate::watch::Settled,
        fingerprint: &mut Vec<u8>,
    ) {
        let settings = &generation.settings;
        let from_settled = |path: &Path| match settled.get(path) {
            Some(bytes) => Ok(bytes.to_vec()),
            None => read(path),
        };
        match load_pair_from(settings, &self.provider, from_settled) {
            Ok(loaded) if loaded.fingerprint == *fingerprint => {}
            Ok(loaded) => {
                *fingerprint = loaded.fingerprint;
                self.metrics.not_after.set(loaded.not_after as f64);
                generation.store.current.store(Arc::new(loaded.key));
                self.metrics.reloads.with_label_values(&["success"]).inc();
                tracing::info!(cert = %settings.cert_file.display(), not_after = loaded.not_after, "certificate reloaded");
                self.audit.emit(&audit::Event::CertificateReload {
                    result: "success",
                    cert_file: &settings.cert_file.to_string_lossy(),
                    not_after: Some(loaded.not_after),
                });
            }
            Err(error) => {
                self.metrics.reloads.with_label_values(&["failure"]).inc();
                tracing::error!(%error, "certificate reload failed; still serving the previous certificate");
                self.audit.emit(&audit::Event::CertificateReload {
                    result: "failure",
                    cert_file: &settings.cert_file.to_string_lossy(),
                    not_after: None,
                });
            }
        }
    }
}

/// Loads and checks the TLS files of a config without serving, for `drawbridge check`.
///
/// # Errors
/// The first [`TlsError`] the files give.
pub fn check_files(settings: &config::Tls) -> Result<(), TlsError> {
    let metrics = crate::metrics::Metrics::new().map(|m| m.tls);
    match metrics {
        Ok(m) => Tls::load(settings, m).map(|_| ()),
        Err(_) => Ok(()),
    }
}
