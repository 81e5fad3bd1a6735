//! The lab: real network namespaces, a real RabbitMQ, real dnsmasq and iptables, the stand-in
//! nova-network, and both daemons (docs/design.md sections 4 and 7). Root only: without root
//! each test prints why it skips. Lab tests run one at a time, each with its own prefix, and
//! tear their lab down even when they fail. The harness is shared; each module is one theme.

#![allow(clippy::disallowed_methods)] // waiting on real processes reads the real clock

mod announce;
mod bus;
mod failover;
pub(crate) mod harness;
mod mirror;
mod operator;
mod prober;
mod site;
