//! Integration tests of `gpuflow-protocol`, one binary.
#![allow(clippy::unwrap_used)]

mod search;
