//! The binary's subcommands that are more than a few lines (one file each), and the host
//! wallet resolution `run` and `id` share. Not part of the library: `anyhow` errors, terminal
//! prompts.

pub(crate) mod doctor;
pub(crate) mod keystore;
pub(crate) mod prompt;
pub(crate) mod wallet;
