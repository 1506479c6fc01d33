//! GPU inventory: what the node offers, from NVML when the NVIDIA driver is present, else from
//! the GPUs declared in the config (and then marked self-declared in the offers).
//!
//! The probe is a small trait ([`GpuProbe`]) so the selection rules are tested without a GPU;
//! [`nvml::NvmlProbe`] is the real driver.

pub mod nvml;

use std::collections::BTreeMap;

use gpuflow_protocol::offer::{GpuSource, GpuSpec};

use crate::config::{DeclaredGpu, Detection};

/// One GPU as the probe saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbedGpu {
    /// Device index.
    pub index: u32,
    /// Normalised model name, e.g. `RTX_4090`.
    pub model: String,
    /// Memory, MiB.
    pub vram_mib: u64,
    /// CUDA version the driver supports, e.g. `12.4`.
    pub cuda_version: String,
    /// Driver version.
    pub driver_version: String,
}

/// A device the probe could not use, with the reason.
#[derive(Debug)]
pub struct FaultyGpu {
    /// Device index.
    pub index: u32,
    /// What failed (a query error, uncorrected ECC errors, ...).
    pub error: Box<dyn std::error::Error + Send + Sync>,
}

/// What a probe found.
#[derive(Debug, Default)]
pub struct ProbeReport {
    /// Usable GPUs.
    pub gpus: Vec<ProbedGpu>,
    /// GPUs left out, each with its reason.
    pub faulty: Vec<FaultyGpu>,
}

/// Why the probe found nothing at all.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The management library is not there (no NVIDIA driver): a normal case on CPU machines.
    #[error("NVML not available ({0})")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The library is there but failed.
    #[error("NVML failed: {0}")]
    Failed(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Something that lists the machine's GPUs.
pub trait GpuProbe {
    /// Lists the GPUs, leaving out (and reporting) those that fail.
    fn probe(&self) -> Result<ProbeReport, ProbeError>;
}

/// One offer's worth of GPUs: a name (the offer's, stable across restarts) and its spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuGroup {
    /// Offer name.
    pub name: String,
    /// The GPUs.
    pub spec: GpuSpec,
}

/// The GPUs the node offers and how it knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    /// One entry per offer.
    pub groups: Vec<GpuGroup>,
    /// Detected or declared.
    pub source: GpuSource,
    /// Why this source was used, for the start-up log.
    pub reason: String,
}

impl Inventory {
    /// Total GPUs across groups.
    pub fn gpu_count(&self) -> u32 {
        self.groups.iter().map(|g| g.spec.count).sum()
    }
}

/// Why no inventory could be made.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// `detection = "nvml"` but NVML does not work.
    #[error(
        "gpu.detection is `nvml` but {0}; install the NVIDIA driver or set gpu.detection = \"auto\""
    )]
    NvmlRequired(#[source] ProbeError),
    /// Two declared entries would give the same offer name.
    #[error("two [[gpu.declared]] entries are named `{0}`; give each a unique `name`")]
    DuplicateName(String),
    /// A declared entry is out of range.
    #[error("[[gpu.declared]] `{name}`: {why}")]
    Declared {
        /// The entry's offer name.
        name: String,
        /// What is wrong.
        why: &'static str,
    },
}

/// `NVIDIA GeForce RTX 4090` → `RTX_4090`: drops the vendor and brand words, joins the rest
/// with underscores (Vast.ai's naming, which renters already type).
pub fn normalize_model(raw: &str) -> String {
    raw.split(|c: char| c.is_whitespace() || c == '-')
        .filter(|w| !w.is_empty())
        .filter(|w| !w.eq_ignore_ascii_case("NVIDIA") && !w.eq_ignore_ascii_case("GeForce"))
        .collect::<Vec<_>>()
        .join("_")
}

/// Chooses the inventory: NVML where it works (for `auto` and `nvml`), otherwise the declared
/// GPUs. With NVML working, declared GPUs are ignored: the hardware is the better witness.
pub fn select(
    detection: Detection,
    probe: &dyn GpuProbe,
    declared: &[DeclaredGpu],
) -> Result<Inventory, GpuError> {
    if detection == Detection::Declared {
        return from_declared(declared, "gpu.detection is `declared`");
    }
    match probe.probe() {
        Ok(report) => {
            for f in &report.faulty {
                tracing::warn!(target: "gpu", index = f.index, error = %f.error, "GPU left out of offers");
            }
            if !declared.is_empty() {
                tracing::warn!(target: "gpu", declared = declared.len(),
                    "ignoring [[gpu.declared]]: NVML reports the real GPUs");
            }
            Ok(from_probe(&report))
        }
        Err(e) if detection == Detection::Nvml => Err(GpuError::NvmlRequired(e)),
        Err(e) => from_declared(declared, &e.to_string()),
    }
}

fn from_probe(report: &ProbeReport) -> Inventory {
    // One offer per (model, memory size): renters filter on both.
    let mut by_model: BTreeMap<(String, u64), GpuSpec> = BTreeMap::new();
    for g in &report.gpus {
        by_model
            .entry((g.model.clone(), g.vram_mib))
            .and_modify(|s| s.count += 1)
            .or_insert_with(|| GpuSpec {
                model: g.model.clone(),
                count: 1,
                vram_mib: g.vram_mib,
                cuda_version: g.cuda_version.clone(),
                driver_version: g.driver_version.clone(),
            });
    }
    let mut per_model: BTreeMap<String, usize> = BTreeMap::new();
    for (model, _) in by_model.keys() {
        *per_model.entry(model.clone()).or_default() += 1;
    }
    let groups = by_model
        .into_iter()
        .map(|((model, vram), spec)| {
            let mut name = model.to_ascii_lowercase();
            if per_model.get(&model).copied().unwrap_or(0) > 1 {
                name = format!("{name}-{vram}mib");
            }
            GpuGroup { name, spec }
        })
        .collect();
    Inventory {
        groups,
        source: GpuSource::Nvml,
        reason: format!(
            "NVML detected {} GPUs ({} left out)",
            report.gpus.len(),
            report.faulty.len()
        ),
    }
}

fn from_declared(declared: &[DeclaredGpu], why_not_nvml: &str) -> Result<Inventory, GpuError> {
    let mut groups: Vec<GpuGroup> = Vec::new();
    for d in declared {
        let name = d
            .name
            .clone()
            .unwrap_or_else(|| d.model.to_ascii_lowercase());
        let bad = |why| GpuError::Declared {
            name: name.clone(),
            why,
        };
        if d.count == 0 {
            return Err(bad("count must be at least 1"));
        }
        if d.model.is_empty() || d.model.contains(char::is_whitespace) {
            return Err(bad(
                "model must be a name like RTX_4090 (underscores, no spaces)",
            ));
        }
        if groups.iter().any(|g| g.name == name) {
            return Err(GpuError::DuplicateName(name));
        }
        groups.push(GpuGroup {
            name,
            spec: GpuSpec {
                model: d.model.clone(),
                count: d.count,
                vram_mib: d.vram_mib,
                cuda_version: d.cuda.clone(),
                driver_version: d.driver.clone(),
            },
        });
    }
    let count: u32 = groups.iter().map(|g| g.spec.count).sum();
    Ok(Inventory {
        groups,
        source: GpuSource::Declared,
        reason: format!(
            "{why_not_nvml}; using {count} GPUs declared in config, offers marked self-declared"
        ),
    })
}

#[cfg(test)]
mod tests;
