//! drawbridge: an auth gateway that stands in front of a websocket sync server.
//!
//! It terminates TLS, forwards plain HTTP to the sync server, and (with the auth core and the
//! tunnel) lets websocket upgrades through only for authenticated sessions. The binary in
//! `main.rs` is a thin CLI over [`App`]; tests and benches use this library.

#![forbid(unsafe_code)]

mod admin;
pub mod app;
mod audit;
pub mod auth;
mod body;
mod canonical;
mod clock;
mod cluster;
pub mod config;
pub mod demo;
mod doors;
mod forward;
mod gateway;
mod headers;
mod https;
mod jsonlines;
mod listener;
pub mod metrics;
mod permissions;
mod pool;
mod registry;
mod respond;
pub mod shutdown;
mod state;
pub mod telemetry;
pub mod terminal;
pub mod tls;
mod tunnel;
pub mod watch;

pub use app::{App, AppError};
pub use config::{Config, ConfigError};

/// Internals the benches time, so that `benches/` runs the library's own code instead of compiling
/// its source files in a second time. Not part of the API: no stability promise.
///
/// The frame tracker is re-exported (which needs it `pub` where it is declared); the header
/// functions and the forwarder's head rewrite are wrapped instead, one inlined call each, so
/// `headers.rs` and `forward.rs` keep their items crate-private.
#[doc(hidden)]
pub mod bench {
    use std::net::IpAddr;

    use http::HeaderMap;

    pub use crate::tunnel::frames::{Advance, FrameError, FrameTracker};

    /// The gateway's hop-by-hop header removal.
    #[inline]
    pub fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
        crate::headers::remove_hop_by_hop(headers, keep_upgrade);
    }

    /// The gateway's `x-drawbridge-*` header removal.
    #[inline]
    pub fn strip_identity(headers: &mut HeaderMap) {
        crate::headers::strip_identity(headers);
    }

    /// The gateway's `X-Forwarded-*` headers, for a request from a trusted proxy (the chain kept).
    #[inline]
    pub fn set_forwarded(
        headers: &mut HeaderMap,
        peer: IpAddr,
        proto: &'static str,
        host: Option<&str>,
    ) {
        crate::headers::set_forwarded(headers, peer, true, proto, host);
    }

    /// The gateway's whole rewrite of a forwarded request head under `config`: URI, HTTP/1.1,
    /// hop-by-hop headers, identity headers and session credentials stripped, `X-Forwarded-*`
    /// and `Host`. `keep_chain` is whether `peer` is a trusted proxy whose chain is kept.
    #[inline]
    pub fn rewrite_head(
        parts: &mut http::request::Parts,
        peer: std::net::SocketAddr,
        keep_chain: bool,
        proto: &'static str,
        config: &crate::Config,
        upgrade: bool,
    ) {
        let peer = crate::forward::Peer {
            addr: peer,
            client: peer.ip(),
            keep_chain,
            proto,
        };
        crate::forward::rewrite_head(parts, peer, config, &config.auth.session.issuer, upgrade);
    }

    /// The forward-auth door's decision on a session, without the network: the gate, the
    /// session keys and the verified-session cache of one generation.
    pub struct ForwardAuthCheck {
        gate: crate::auth::gate::Gate,
        sessions: crate::auth::session::Sessions,
        verified: crate::auth::verified::VerifiedSessions,
        config: crate::Config,
    }

    impl ForwardAuthCheck {
        /// The door's parts for `config`.
        ///
        /// # Errors
        /// When the session keys cannot be loaded.
        pub fn new(config: crate::Config) -> Result<Self, crate::auth::session::SessionError> {
            let sessions = crate::auth::session::Sessions::from_config(&config.auth.session)?;
            let lookups = prometheus::IntCounterVec::new(
                prometheus::Opts::new("bench_lookups", "bench"),
                &["result"],
            )
            .map_err(|e| crate::auth::session::SessionError::Crypto(e.to_string()))?;
            Ok(Self {
                gate: crate::auth::gate::Gate::new(config.auth.session.max_ttl, None),
                verified: crate::auth::verified::VerifiedSessions::new(
                    crate::auth::verified::MAX_ENTRIES,
                    lookups,
                ),
                sessions,
                config,
            })
        }

        /// The session keys, to mint a session to check.
        pub fn sessions(&self) -> &crate::auth::session::Sessions {
            &self.sessions
        }

        /// A check as the door answers it now: a token verified before is answered from the
        /// cache; the assertion signed only when `assertion`. The answer's headers, or `None`
        /// when refused.
        pub fn cached(&self, request: &HeaderMap, assertion: bool) -> Option<HeaderMap> {
            let admitted = crate::doors::forward_auth::admit(
                &self.gate,
                &self.sessions,
                &self.verified,
                request,
            );
            // Without a cluster store nothing in the check waits, so one poll answers it.
            let polled = std::future::Future::poll(
                std::pin::pin!(admitted),
                &mut std::task::Context::from_waker(std::task::Waker::noop()),
            );
            let std::task::Poll::Ready(admitted) = polled else {
                return None;
            };
            let verified = admitted.ok()?;
            Some(self.answer(request, assertion, &verified))
        }

        /// A check verifying the token and signing an assertion every time, as the door did
        /// before it kept verified sessions.
        pub fn uncached(&self, request: &HeaderMap) -> Option<HeaderMap> {
            let (token, _) = crate::auth::gate::Gate::token(&self.sessions, request)?;
            let claims = self.gate.verify_held(&self.sessions, &token).ok()?;
            let verified = crate::doors::forward_auth::render(claims);
            Some(self.answer(request, true, &verified))
        }

        fn answer(
            &self,
            request: &HeaderMap,
            assertion: bool,
            verified: &crate::auth::verified::Verified,
        ) -> HeaderMap {
            crate::doors::forward_auth::answer(
                request,
                &self.sessions,
                &self.config.upstream,
                assertion,
                verified,
            )
            .into_parts()
            .0
            .headers
        }
    }

    /// The JSON body of a login reply for `minted`, as the login door writes it.
    ///
    /// # Panics
    /// Never: the body is always a JSON object.
    pub fn login_reply(minted: &crate::auth::session::Minted) -> Vec<u8> {
        crate::doors::login::session_reply_json(minted, crate::config::auth::TokenField::default())
            .expect("a JSON object")
    }

    /// The main listener's server-side TLS handshake, over rustls's unbuffered API.
    ///
    /// # Errors
    /// When the handshake fails.
    pub async fn accept_tls(
        tcp: tokio::net::TcpStream,
        config: std::sync::Arc<rustls::ServerConfig>,
    ) -> std::io::Result<impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> {
        crate::tls::TlsStream::accept(tcp, config).await
    }
}
