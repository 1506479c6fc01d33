use super::*;

/// A probe that answers what the test says.
enum FakeProbe {
    Absent,
    Broken,
    Present(Vec<ProbedGpu>, usize),
}

impl GpuProbe for FakeProbe {
    fn probe(&self) -> Result<ProbeReport, ProbeError> {
        match self {
            Self::Absent => Err(ProbeError::Unavailable(
                "libnvidia-ml.so: cannot open shared object file".into(),
            )),
            Self::Broken => Err(ProbeError::Failed("NVML_ERROR_UNKNOWN".into())),
            Self::Present(gpus, faulty) => Ok(ProbeReport {
                gpus: gpus.clone(),
                faulty: (0..*faulty)
                    .map(|i| FaultyGpu {
                        index: 100 + u32::try_from(i).unwrap(),
                        error: "GPU is lost".into(),
                    })
                    .collect(),
            }),
        }
    }
}

fn probed(index: u32, model: &str, vram_mib: u64) -> ProbedGpu {
    ProbedGpu {
        index,
        model: model.into(),
        vram_mib,
        cuda_version: "12.4".into(),
        driver_version: "550.54.14".into(),
    }
}

fn declared(name: Option<&str>, model: &str, count: u32) -> DeclaredGpu {
    DeclaredGpu {
        name: name.map(str::to_owned),
        model: model.into(),
        count,
        vram_mib: 24_564,
        cuda: "12.4".into(),
        driver: "550.54.14".into(),
    }
}

#[test]
fn model_names_are_normalised_like_vast() {
    assert_eq!(normalize_model("NVIDIA GeForce RTX 4090"), "RTX_4090");
    assert_eq!(normalize_model("NVIDIA H100 80GB HBM3"), "H100_80GB_HBM3");
    assert_eq!(normalize_model("NVIDIA A100-SXM4-80GB"), "A100_SXM4_80GB");
    assert_eq!(normalize_model("NVIDIA RTX A6000"), "RTX_A6000");
    assert_eq!(
        normalize_model("Tesla V100-SXM2-16GB"),
        "Tesla_V100_SXM2_16GB"
    );
}

#[test]
fn auto_without_nvml_uses_declared_gpus_and_says_why() {
    let inv = select(
        Detection::Auto,
        &FakeProbe::Absent,
        &[declared(None, "RTX_4090", 2)],
    )
    .unwrap();
    assert_eq!(inv.source, GpuSource::Declared);
    assert_eq!(inv.gpu_count(), 2);
    assert_eq!(inv.groups[0].name, "rtx_4090");
    assert!(inv.reason.contains("NVML not available"), "{}", inv.reason);
    assert!(inv.reason.contains("2 GPUs declared"), "{}", inv.reason);
}

#[test]
fn auto_with_nvml_groups_detected_gpus_and_ignores_declared_ones() {
    let probe = FakeProbe::Present(
        vec![
            probed(0, "RTX_4090", 24_564),
            probed(1, "RTX_4090", 24_564),
            probed(2, "A100", 40_960),
            probed(3, "A100", 81_920),
        ],
        1,
    );
    let inv = select(Detection::Auto, &probe, &[declared(None, "H100", 8)]).unwrap();
    assert_eq!(inv.source, GpuSource::Nvml);
    let names: Vec<_> = inv.groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["a100-40960mib", "a100-81920mib", "rtx_4090"]);
    assert_eq!(inv.groups[2].spec.count, 2);
    assert_eq!(inv.gpu_count(), 4, "the faulty GPU is left out");
    assert!(inv.reason.contains("1 left out"), "{}", inv.reason);
}

#[test]
fn detection_modes_are_honoured() {
    let probe = FakeProbe::Present(vec![probed(0, "RTX_4090", 24_564)], 0);
    let decl = [declared(Some("sim"), "RTX_3090", 1)];
    let inv = select(Detection::Declared, &probe, &decl).unwrap();
    assert_eq!(inv.source, GpuSource::Declared);
    assert_eq!(inv.groups[0].spec.model, "RTX_3090");

    let err = select(Detection::Nvml, &FakeProbe::Absent, &decl).unwrap_err();
    assert!(matches!(err, GpuError::NvmlRequired(_)), "{err}");
    // A broken (not missing) NVML under `auto` still falls back, and the reason says so.
    let inv = select(Detection::Auto, &FakeProbe::Broken, &decl).unwrap();
    assert!(inv.reason.contains("NVML failed"), "{}", inv.reason);
}

#[test]
fn declared_entries_are_checked() {
    let dup = [declared(None, "RTX_4090", 1), declared(None, "RTX_4090", 1)];
    assert!(matches!(
        select(Detection::Declared, &FakeProbe::Absent, &dup),
        Err(GpuError::DuplicateName(_))
    ));
    let zero = [declared(None, "RTX_4090", 0)];
    assert!(matches!(
        select(Detection::Declared, &FakeProbe::Absent, &zero),
        Err(GpuError::Declared { .. })
    ));
}
