//! Configuration: loaded, validated into types.
