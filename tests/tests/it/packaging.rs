//! Packaging: the one-command devnet (`make devnet`) and the container files.
//!
//! - [`devnet`]: `scripts/devnet.sh` end to end, Ctrl-C included.
//! - [`docker`]: `docker-compose.yml` and the `Dockerfile`, as far as a machine without a Docker
//!   engine can check them: `docker-compose config` validates and resolves the compose file (the
//!   tool must be installed: `.ci/run` installs Debian's `docker-compose`; a missing tool is a
//!   failure, never a skip), and the Dockerfile is read as text. Nothing is built or run.
//! - [`compose`]: the compose devnet for real on the private engine: images built locally,
//!   `up`, a rent from outside the compose network with a command over SSH in the lease, `down
//!   -v` leaving nothing behind.

use std::path::{Path, PathBuf};

mod compose;
mod devnet;
mod docker;

/// The workspace root.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}
