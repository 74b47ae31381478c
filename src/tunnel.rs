//! Session-gated websocket tunnels: gating, the relay, and their lifetimes.

pub(crate) mod frames;
