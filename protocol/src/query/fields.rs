//! The fields a query can name, what each one reads from an [`Offer`], and the exact value
//! types they compare as.
//!
//! Numbers compare exactly: every numeric field is a ratio of integers ([`Num`]), so
//! `gpu_ram>=24` on a card of 24 564 MiB (23.99 GB) is false however it is written, and
//! `dph<=0.4` compares token base units without rounding.

use std::cmp::Ordering;

use super::EvalCtx;
use super::value::{Num, Version};
use crate::offer::{GpuSource, Offer};

/// What kind of value a field holds; it decides which operators and values the field accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldKind {
    /// A non-negative decimal number, compared exactly.
    Number,
    /// A dotted version such as `12.4`, compared part by part as numbers (12.10 > 12.4).
    Version,
    /// A word; `gpu_name` and `geolocation` compare case-insensitively with `_` = space.
    Text,
    /// `true` or `false`.
    Bool,
}

impl FieldKind {
    /// How the kind is named in `--help` and in error messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Number => "number",
            Self::Version => "version",
            Self::Text => "text",
            Self::Bool => "bool",
        }
    }

    /// The operators this kind accepts, as written in error messages.
    pub fn allowed_ops(self) -> &'static str {
        match self {
            Self::Number | Self::Version => "<, <=, =, ==, !=, >=, >, in, notin",
            Self::Text => "=, ==, !=, in, notin",
            Self::Bool => "=, ==, !=",
        }
    }

    /// What a value of this kind looks like, for error messages.
    pub(crate) fn expected(self) -> &'static str {
        match self {
            Self::Number => "a non-negative number such as 2 or 0.45",
            Self::Version => "a version such as 12.4 or 550.54.14",
            Self::Text => "a word or a quoted string",
            Self::Bool => "true or false",
        }
    }
}

/// A field of the query language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// `gpu_name`: GPU model.
    GpuName,
    /// `num_gpus`: GPUs in the offer.
    NumGpus,
    /// `gpu_ram`: GB per GPU.
    GpuRam,
    /// `gpu_total_ram`: GB of all GPUs.
    GpuTotalRam,
    /// `dph`: tokens per hour for the whole offer.
    Dph,
    /// `dph_per_gpu`: tokens per GPU-hour.
    DphPerGpu,
    /// `reliability`: host score 0..1.
    Reliability,
    /// `cuda_vers`: CUDA version.
    CudaVers,
    /// `driver_version`: driver version.
    DriverVersion,
    /// `cpu_cores`: CPU cores.
    CpuCores,
    /// `cpu_ram`: GB of RAM.
    CpuRam,
    /// `disk_space`: GB of disk.
    DiskSpace,
    /// `inet_up`: Mbit/s up.
    InetUp,
    /// `inet_down`: Mbit/s down.
    InetDown,
    /// `geolocation`: country code.
    Geolocation,
    /// `verified`: GPUs detected by NVML.
    Verified,
    /// `simulated`: the host's GPUs are simulated (no device reaches the container).
    Simulated,
    /// `disk_limited`: the host holds each lease to `disk_space` with a storage quota.
    DiskLimited,
    /// `host`: host peer id.
    Host,
    /// `host_age`: days online.
    HostAge,
    /// `duration`: longest lease, hours.
    Duration,
    /// `min_duration`: shortest lease, hours (the quote's signed minimum).
    MinDuration,
}

/// One row of the field table that `gpuflow search --help` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldInfo {
    /// The field.
    pub field: Field,
    /// Its name in queries.
    pub name: &'static str,
    /// Its value kind.
    pub kind: FieldKind,
    /// What it means, with its unit.
    pub meaning: &'static str,
}

const fn info(
    field: Field,
    name: &'static str,
    kind: FieldKind,
    meaning: &'static str,
) -> FieldInfo {
    FieldInfo {
        field,
        name,
        kind,
        meaning,
    }
}

use FieldKind::{Bool, Number, Text, Version as Ver};

const FIELDS: &[FieldInfo] = &[
    info(
        Field::GpuName,
        "gpu_name",
        Text,
        "GPU model, e.g. RTX_4090 (case and _/space insensitive)",
    ),
    info(
        Field::NumGpus,
        "num_gpus",
        Number,
        "number of GPUs in the offer",
    ),
    info(
        Field::GpuRam,
        "gpu_ram",
        Number,
        "memory per GPU, GB (MiB / 1024)",
    ),
    info(
        Field::GpuTotalRam,
        "gpu_total_ram",
        Number,
        "memory of all GPUs together, GB",
    ),
    info(
        Field::Dph,
        "dph",
        Number,
        "price of the whole offer per hour, in tokens (e.g. USDC)",
    ),
    info(
        Field::DphPerGpu,
        "dph_per_gpu",
        Number,
        "price per GPU per hour, in tokens",
    ),
    info(
        Field::Reliability,
        "reliability",
        Number,
        "host reliability score 0..1 (new hosts 0.6)",
    ),
    info(
        Field::CudaVers,
        "cuda_vers",
        Ver,
        "highest CUDA version the driver supports, e.g. 12.4",
    ),
    info(
        Field::DriverVersion,
        "driver_version",
        Ver,
        "NVIDIA driver version, e.g. 550.54.14",
    ),
    info(
        Field::CpuCores,
        "cpu_cores",
        Number,
        "CPU cores that come with the offer",
    ),
    info(
        Field::CpuRam,
        "cpu_ram",
        Number,
        "RAM that comes with the offer, GB",
    ),
    info(
        Field::DiskSpace,
        "disk_space",
        Number,
        "disk space for the workload, GB",
    ),
    info(Field::InetUp, "inet_up", Number, "upload bandwidth, Mbit/s"),
    info(
        Field::InetDown,
        "inet_down",
        Number,
        "download bandwidth, Mbit/s",
    ),
    info(
        Field::Geolocation,
        "geolocation",
        Text,
        "host country, ISO 3166 code such as DE",
    ),
    info(
        Field::Verified,
        "verified",
        Bool,
        "GPUs detected through NVML, not only declared",
    ),
    info(
        Field::Simulated,
        "simulated",
        Bool,
        "GPUs simulated by a development host: the container gets no GPU",
    ),
    info(
        Field::DiskLimited,
        "disk_limited",
        Bool,
        "the host enforces disk_space with a storage quota (else it is not a hard limit)",
    ),
    info(Field::Host, "host", Text, "host peer id (exact)"),
    info(
        Field::HostAge,
        "host_age",
        Number,
        "days since the host first came online",
    ),
    info(
        Field::Duration,
        "duration",
        Number,
        "longest lease the host accepts, hours",
    ),
    info(
        Field::MinDuration,
        "min_duration",
        Number,
        "shortest lease the host accepts, hours (the deposit must cover it)",
    ),
];

/// Every field of the query language, in the order `--help` lists them.
pub fn fields() -> &'static [FieldInfo] {
    FIELDS
}

impl Field {
    /// The row of [`fields`] for this field.
    pub fn info(self) -> &'static FieldInfo {
        // FIELDS lists every variant once, in declaration order (checked by a unit test).
        &FIELDS[self as usize]
    }

    /// Its name in queries.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// Its value kind.
    pub fn kind(self) -> FieldKind {
        self.info().kind
    }

    /// The field called `name` (ASCII case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        FIELDS
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
            .map(|f| f.field)
    }

    /// Whether text values compare case-insensitively with `_` and space equal.
    pub(crate) fn folds_text(self) -> bool {
        matches!(self, Self::GpuName | Self::Geolocation)
    }

    /// The value of this field in `offer`. `None` when the offer's text does not parse (a
    /// version such as `unknown`); such an offer matches no clause on that field.
    pub(crate) fn value<'a>(self, offer: &'a Offer, ctx: &EvalCtx<'_>) -> Option<Scalar<'a>> {
        Some(match self {
            Self::Reliability => Scalar::Num(Num::from_score(ctx.reliability(&offer.host))),
            Self::HostAge => Scalar::Num(Num::ratio(
                u128::from(ctx.now().saturating_sub(offer.host_since)),
                86_400,
            )),
            _ => return self.offer_value(offer),
        })
    }

    /// The value of a field that depends on the offer alone (not on the clock or the scores);
    /// the book's indexes are built from these. `None` for the context-dependent fields.
    pub(crate) fn offer_value(self, offer: &Offer) -> Option<Scalar<'_>> {
        let g = &offer.gpu;
        Some(match self {
            Self::GpuName => Scalar::Text(&g.model),
            Self::NumGpus => Scalar::Num(Num::int(u128::from(g.count))),
            Self::GpuRam => Scalar::Num(Num::ratio(u128::from(g.vram_mib), 1024)),
            Self::GpuTotalRam => Scalar::Num(Num::ratio(
                u128::from(g.count) * u128::from(g.vram_mib),
                1024,
            )),
            Self::Dph => Scalar::Num(Num::tokens(offer.price_per_hour(), offer.token_decimals)),
            Self::DphPerGpu => {
                Scalar::Num(Num::tokens(offer.price_per_gpu_hour, offer.token_decimals))
            }
            Self::CudaVers => Scalar::Version(Version::parse(&g.cuda_version)?),
            Self::DriverVersion => Scalar::Version(Version::parse(&g.driver_version)?),
            Self::CpuCores => Scalar::Num(Num::int(u128::from(offer.cpu_cores))),
            Self::CpuRam => Scalar::Num(Num::ratio(u128::from(offer.ram_mib), 1024)),
            Self::DiskSpace => Scalar::Num(Num::int(u128::from(offer.disk_gib))),
            Self::InetUp => Scalar::Num(Num::int(u128::from(offer.inet_up_mbps))),
            Self::InetDown => Scalar::Num(Num::int(u128::from(offer.inet_down_mbps))),
            Self::Geolocation => Scalar::Text(&offer.region),
            Self::Verified => Scalar::Bool(offer.gpu_source == GpuSource::Nvml),
            Self::Simulated => Scalar::Bool(offer.gpu_source == GpuSource::Simulated),
            Self::DiskLimited => Scalar::Bool(offer.disk_limited),
            Self::Host => Scalar::Text(&offer.host),
            Self::Duration => Scalar::Num(Num::ratio(u128::from(offer.max_duration_secs), 3600)),
            Self::MinDuration => Scalar::Num(Num::ratio(u128::from(offer.min_duration_secs), 3600)),
            Self::Reliability | Self::HostAge => return None,
        })
    }
}

/// A field's value, borrowed from the offer or from a query.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Scalar<'a> {
    Num(Num),
    Version(Version),
    Text(&'a str),
    Bool(bool),
}

impl Scalar<'_> {
    /// Compares two values of `field`; `None` when the kinds differ (a parser bug, treated as
    /// "does not match").
    pub(crate) fn compare(&self, other: &Scalar<'_>, field: Field) -> Option<Ordering> {
        match (self, other) {
            (Scalar::Num(a), Scalar::Num(b)) => Some(a.cmp(b)),
            (Scalar::Version(a), Scalar::Version(b)) => Some(a.cmp(b)),
            (Scalar::Bool(a), Scalar::Bool(b)) => Some(a.cmp(b)),
            (Scalar::Text(a), Scalar::Text(b)) if field.folds_text() => Some(fold(a).cmp(fold(b))),
            (Scalar::Text(a), Scalar::Text(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }
}

/// The case- and separator-insensitive form of a text value: ASCII lower case, space as `_`
/// (Vast.ai writes `RTX_4090` for "RTX 4090").
pub(crate) fn fold(text: &str) -> impl Iterator<Item = u8> + '_ {
    text.bytes().map(|b| {
        if b == b' ' {
            b'_'
        } else {
            b.to_ascii_lowercase()
        }
    })
}

/// [`fold`] collected into a string, for index keys and query values.
pub(crate) fn folded(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c == ' ' {
                '_'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_table_lists_every_variant_in_order() {
        for (i, f) in FIELDS.iter().enumerate() {
            assert_eq!(f.field as usize, i, "{}", f.name);
            assert_eq!(Field::from_name(f.name), Some(f.field));
        }
        assert_eq!(FIELDS.len(), Field::MinDuration as usize + 1);
    }

    #[test]
    fn text_folds_case_and_separator() {
        let a = Scalar::Text("RTX 4090");
        let b = Scalar::Text("rtx_4090");
        assert_eq!(a.compare(&b, Field::GpuName), Some(Ordering::Equal));
        assert_ne!(a.compare(&b, Field::Host), Some(Ordering::Equal));
        assert_eq!(folded("RTX 4090"), "rtx_4090");
    }
}
