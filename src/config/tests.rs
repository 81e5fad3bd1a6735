//! Tests of the whole load: example config, env overrides, every rule, error texts.
