//! Integration tests, one binary: `simulation` (the pure core under a virtual clock), `cli`
//! (the binary as an operator runs it), `lab` (both daemons on real namespaces, RabbitMQ,
//! dnsmasq and iptables; root only) and `regression` (one test per bug found).

mod cli;
mod lab;
mod regression;
mod simulation;
