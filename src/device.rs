//! Devices a trial can run on, as a study or the command line names them, and what this build
//! of maestro can see (`maestro doctor`).

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceSpec {
    /// burn's pure-Rust CPU backend (flex).
    Cpu,
    Cuda(usize),
    Wgpu,
}

impl FromStr for DeviceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(DeviceSpec::Cpu),
            "wgpu" => Ok(DeviceSpec::Wgpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(i)) => Ok(DeviceSpec::Cuda(i)),
                _ => Err(format!("`{s}` is not a device; use cpu, cuda:N or wgpu")),
            },
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
            DeviceSpec::Wgpu => f.write_str("wgpu"),
        }
    }
}

impl DeviceSpec {
    /// Whether this build has the backend this device needs.
    pub fn compiled_in(&self) -> bool {
        match self {
            DeviceSpec::Cpu => true,
            DeviceSpec::Cuda(_) => cfg!(feature = "cuda"),
            DeviceSpec::Wgpu => cfg!(feature = "wgpu"),
        }
    }

    pub fn feature(&self) -> Option<&'static str> {
        match self {
            DeviceSpec::Cpu => None,
            DeviceSpec::Cuda(_) => Some("cuda"),
            DeviceSpec::Wgpu => Some("wgpu"),
        }
    }

    /// The burn device.
    pub fn burn_device(&self) -> Result<burn::tensor::Device, String> {
        match self {
            DeviceSpec::Cpu => Ok(burn::tensor::Device::flex()),
            #[cfg(feature = "cuda")]
            DeviceSpec::Cuda(i) => Ok(burn::tensor::Device::cuda(*i)),
            #[cfg(feature = "wgpu")]
            DeviceSpec::Wgpu => Ok(burn::tensor::Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
            #[allow(unreachable_patterns)]
            other => Err(format!(
                "{other} needs maestro built with the `{}` feature (cargo build --release --features {})",
                other.feature().unwrap_or_default(),
                other.feature().unwrap_or_default()
            )),
        }
    }
}

/// One line per backend for `maestro doctor`: compiled in or not, and the devices it sees.
pub fn doctor_report() -> Vec<(String, String)> {
    use burn::tensor::{Device, DeviceType};
    let mut rows = Vec::new();
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let flex = Device::enumerate(DeviceType::Flex);
    rows.push((
        "flex (CPU)".to_string(),
        format!("compiled in; {} device(s), {threads} threads -> `cpu`", flex.into_iter().count()),
    ));
    #[cfg(feature = "cuda")]
    {
        let found = std::panic::catch_unwind(|| Device::enumerate(DeviceType::Cuda).into_iter().count());
        rows.push((
            "cuda".to_string(),
            match found {
                Ok(0) => "compiled in; no CUDA device visible (driver, CUDA_VISIBLE_DEVICES?)".to_string(),
                Ok(n) => format!("compiled in; {n} device(s) -> cuda:0..cuda:{}", n - 1),
                Err(_) => "compiled in; the CUDA driver could not be loaded".to_string(),
            },
        ));
    }
    #[cfg(not(feature = "cuda"))]
    rows.push(("cuda".into(), "not compiled in (build with --features cuda)".into()));
    #[cfg(feature = "wgpu")]
    {
        let found = std::panic::catch_unwind(|| Device::enumerate(DeviceType::Wgpu).into_iter().count());
        rows.push((
            "wgpu".to_string(),
            match found {
                Ok(0) => "compiled in; no adapter visible".to_string(),
                Ok(n) => format!("compiled in; {n} adapter(s) -> `wgpu`"),
                Err(_) => "compiled in; no graphics driver could be loaded".to_string(),
            },
        ));
    }
    #[cfg(not(feature = "wgpu"))]
    rows.push(("wgpu".into(), "not compiled in (build with --features wgpu)".into()));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        assert_eq!("cuda:3".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(3)));
        assert_eq!("cpu".parse::<DeviceSpec>(), Ok(DeviceSpec::Cpu));
        assert!("gpu0".parse::<DeviceSpec>().is_err());
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
    }
}
