//! Lab tests of the bus.
