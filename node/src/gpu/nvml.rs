//! The real GPU probe: NVIDIA's management library through `nvml-wrapper`, which loads
//! `libnvidia-ml.so` at run time (so the node builds and runs on machines without the driver).

use nvml_wrapper::Nvml;
use nvml_wrapper::enum_wrappers::device::{EccCounter, MemoryError, TemperatureSensor};
use nvml_wrapper::error::NvmlError;

use super::{FaultyGpu, GpuProbe, ProbeError, ProbeReport, ProbedGpu, normalize_model};

/// Probes GPUs through NVML.
#[derive(Debug, Default, Clone, Copy)]
pub struct NvmlProbe;

/// A GPU that answers but should not be rented out.
#[derive(Debug, thiserror::Error)]
#[error(
    "{count} uncorrected ECC memory errors since the driver loaded; check the card (nvidia-smi -q -d ECC)"
)]
struct UncorrectedEcc {
    count: u64,
}

/// `12040` → `12.4`, the way `nvidia-smi` prints it.
pub fn format_cuda_version(v: i32) -> String {
    format!(
        "{}.{}",
        nvml_wrapper::cuda_driver_version_major(v),
        nvml_wrapper::cuda_driver_version_minor(v)
    )
}

fn classify(e: NvmlError) -> ProbeError {
    match e {
        // No library or no driver: a machine without NVIDIA GPUs, not a failure.
        NvmlError::LibloadingError(_)
        | NvmlError::FailedToLoadSymbol(_)
        | NvmlError::LibraryNotFound
        | NvmlError::DriverNotLoaded => ProbeError::Unavailable(Box::new(e)),
        other => ProbeError::Failed(Box::new(other)),
    }
}

impl GpuProbe for NvmlProbe {
    fn probe(&self) -> Result<ProbeReport, ProbeError> {
        let nvml = Nvml::init().map_err(classify)?;
        let count = nvml.device_count().map_err(classify)?;
        let cuda_version = format_cuda_version(nvml.sys_cuda_driver_version().map_err(classify)?);
        let driver_version = nvml.sys_driver_version().map_err(classify)?;
        let mut report = ProbeReport::default();
        for index in 0..count {
            match device(&nvml, index, &cuda_version, &driver_version) {
                Ok(gpu) => report.gpus.push(gpu),
                Err(error) => report.faulty.push(FaultyGpu { index, error }),
            }
        }
        Ok(report)
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn device(nvml: &Nvml, index: u32, cuda: &str, driver: &str) -> Result<ProbedGpu, BoxError> {
    let d = nvml.device_by_index(index)?;
    let name = d.name()?;
    let vram_mib = d.memory_info()?.total / (1024 * 1024);
    // Health, where cheap: a card with uncorrected ECC errors corrupts renters' results.
    // Consumer cards have no ECC (NotSupported), which is not a fault.
    match d.total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile) {
        Ok(0) | Err(NvmlError::NotSupported) => {}
        Ok(count) => return Err(Box::new(UncorrectedEcc { count })),
        Err(e) => return Err(Box::new(e)),
    }
    if let Ok(temp) = d.temperature(TemperatureSensor::Gpu) {
        tracing::debug!(target: "gpu", index, %name, temp_c = temp, "GPU probed");
    }
    Ok(ProbedGpu {
        index,
        model: normalize_model(&name),
        vram_mib,
        cuda_version: cuda.to_owned(),
        driver_version: driver.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_version_is_formatted_like_nvidia_smi() {
        assert_eq!(format_cuda_version(12040), "12.4");
        assert_eq!(format_cuda_version(11080), "11.8");
    }

    #[test]
    fn missing_library_is_unavailable_not_failed() {
        // On machines without the driver (CI, laptops) this is the path `auto` takes; on a GPU
        // machine NVML initialises and the probe lists real devices.
        match NvmlProbe.probe() {
            Err(ProbeError::Unavailable(_)) | Ok(_) => {}
            Err(other) => panic!("unexpected NVML error class: {other}"),
        }
    }
}
