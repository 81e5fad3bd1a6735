//! Import of a Linux-HA heartbeat setup (ha.cf, authkeys, haresources).
