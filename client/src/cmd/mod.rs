//! One file per subcommand; each has an `Args` struct with `run(self)`.

pub(crate) mod offer;
pub(crate) mod search;
