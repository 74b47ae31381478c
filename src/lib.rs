//! drawbridge: an auth gateway that stands in front of a websocket sync server.
//!
//! It terminates TLS, forwards plain HTTP to the sync server, and (with the auth core and the
//! tunnel) lets websocket upgrades through only for authenticated sessions. The binary in
//! `main.rs` is a thin CLI over [`App`]; tests and benches use this library.

#![forbid(unsafe_code)]

mod admin;
pub mod app;
pub mod auth;
mod body;
mod canonical;
mod clock;
pub mod config;
pub mod demo;
mod doors;
mod forward;
mod gateway;
mod headers;
mod listener;
pub mod metrics;
mod permissions;
mod registry;
mod respond;
pub mod shutdown;
mod state;
pub mod tls;
mod tunnel;

pub use app::{App, AppError};
pub use config::{Config, ConfigError};
