//! The warm standby's mirror (issue 6): the active node keeps every standby supplied with
//! nova's network state, so a takeover puts the VMs' floating IPs, their NAT and the bridge
//! gateways in place before nova-network has even started.
//!
//! [`snapshot`] is the value carried, [`capture`] reads it on the active node, [`frame`]
//! signs it for the wire, [`stream`] carries it over TCP (the active pushes, each standby
//! holds the newest complete snapshot), [`changes`] tells the active when to take a new one,
//! and [`apply`] puts it in place at takeover. When to apply it is the daemon's decision
//! ([`Held::usable`] says whether a held snapshot may be).

pub mod apply;
pub mod capture;
pub mod changes;
pub mod frame;
pub mod snapshot;
pub mod stream;

pub use snapshot::Snapshot;
pub use stream::{Held, Refusal};
