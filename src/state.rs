//! Persistent local state: the boot generation.
