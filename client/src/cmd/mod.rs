//! One file per subcommand; each has an `Args` struct with `run(self)`.

pub(crate) mod extend;
pub(crate) mod host;
pub(crate) mod leases;
pub(crate) mod logs;
pub(crate) mod offer;
pub(crate) mod rent;
mod rent_check;
mod rent_pay;
pub(crate) mod search;
pub(crate) mod stop;
pub(crate) mod templates;
pub(crate) mod wait;
pub(crate) mod wallet;
