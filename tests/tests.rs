//! Integration tests, one binary: `simulation` (the pure core under a virtual clock), `cli`
//! (the binary as an operator runs it) and `lab` (both daemons on real namespaces, RabbitMQ,
//! dnsmasq and iptables; root only).

mod cli;
mod lab;
mod simulation;
