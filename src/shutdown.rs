//! The shutdown signal, the readiness flag that drops before draining, and the drain deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Completes on SIGTERM or SIGINT.
///
/// SIGTERM is what Kubernetes sends to start a graceful shutdown; SIGINT is Ctrl-C.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received; draining"),
                    _ = int.recv() => tracing::info!("SIGINT received; draining"),
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// What `/readyz` answers: ready once TLS is loaded, and no longer once draining starts.
#[derive(Debug, Default, Clone)]
pub struct Readiness {
    inner: Arc<ReadinessInner>,
}

#[derive(Debug, Default)]
struct ReadinessInner {
    tls_loaded: AtomicBool,
    draining: AtomicBool,
}

impl Readiness {
    /// Marks the serving certificate as loaded (or not needed, in plaintext mode).
    pub fn set_tls_loaded(&self) {
        self.inner.tls_loaded.store(true, Ordering::Release);
    }

    /// Marks the start of draining; `/readyz` answers 503 from now on.
    pub fn set_draining(&self) {
        self.inner.draining.store(true, Ordering::Release);
    }

    /// Whether draining has begun.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }

    /// `Ok` when ready, otherwise the reason.
    ///
    /// # Errors
    /// A short reason (`"draining"`, `"tls not loaded"`) when not ready.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.is_draining() {
            Err("draining")
        } else if !self.inner.tls_loaded.load(Ordering::Acquire) {
            Err("tls not loaded")
        } else {
            Ok(())
        }
    }
}
