//! Integration tests, one binary: `simulation` (the pure core under a virtual clock).

mod simulation;
