//! nova-network-ha: keeps OpenStack's nova-network highly available across a pool of
//! network servers.
//!
//! The failover logic ([`cluster`]) and the heartbeat format ([`wire`]) are pure: they never
//! read a clock, sleep or touch a socket. Configuration ([`config`]) and the import of a
//! Linux-HA heartbeat setup ([`import`]) turn files into validated types. The daemon and its
//! drivers live around them.
#![warn(missing_docs)]

pub mod admin;
pub mod bus;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod import;
pub mod mirror;
pub mod probes;
pub mod state;
pub mod takeover;
pub mod wire;
