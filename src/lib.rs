//! drawbridge: an auth gateway that stands in front of a websocket sync server.
//!
//! It terminates TLS, forwards plain HTTP to the sync server, and (with the auth core and the
//! tunnel) lets websocket upgrades through only for authenticated sessions. The binary in
//! `main.rs` is a thin CLI over [`App`]; tests and benches use this library.

#![forbid(unsafe_code)]

mod admin;
pub mod app;
pub mod auth;
pub mod config;
pub mod demo;
mod doors;
mod forward;
mod gateway;
mod listener;
pub mod metrics;
pub mod shutdown;
pub mod tls;
mod tunnel;

pub use app::{App, AppError};
pub use config::{Config, ConfigError};

/// Internals the benches time, re-exported so that `benches/` links the library's own code instead
/// of compiling its source files in a second time. Not part of the API: no stability promise.
#[doc(hidden)]
pub mod bench {
    pub use crate::gateway::headers::{remove_hop_by_hop, set_forwarded, strip_identity};
    pub use crate::tunnel::frames::{Advance, FrameError, FrameTracker};
}
