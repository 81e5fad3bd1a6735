//! Integration tests, one binary: `simulation` (the pure core under a virtual clock) and
//! `cli` (the binary as an operator runs it).

mod cli;
mod simulation;
