//! Devices a trial can run on, as a study or the command line names them, and what this build
//! of maestro can see (`maestro doctor`).

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceSpec {
    /// burn's pure-Rust CPU backend (flex).
    Cpu,
    Cuda(usize),
    /// burn's LibTorch backend on a CUDA card: PyTorch's own kernels (cuBLAS, cuDNN) under the
    /// same model code, through the `tch` feature.
    LibTorchCuda(usize),
    /// The LibTorch backend on the CPU: checks a `tch` build on a machine without a GPU.
    LibTorchCpu,
    Wgpu,
}

impl FromStr for DeviceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(DeviceSpec::Cpu),
            "wgpu" => Ok(DeviceSpec::Wgpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            "libtorch-cuda" => Ok(DeviceSpec::LibTorchCuda(0)),
            "libtorch-cpu" => Ok(DeviceSpec::LibTorchCpu),
            _ => {
                let card = |prefix: &str| s.strip_prefix(prefix).and_then(|i| i.parse::<usize>().ok());
                match (card("cuda:"), card("libtorch-cuda:")) {
                    (Some(i), _) => Ok(DeviceSpec::Cuda(i)),
                    (_, Some(i)) => Ok(DeviceSpec::LibTorchCuda(i)),
                    _ => Err(format!("`{s}` is not a device; use cpu, cuda:N, libtorch-cuda:N, libtorch-cpu or wgpu")),
                }
            }
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
            DeviceSpec::LibTorchCuda(i) => write!(f, "libtorch-cuda:{i}"),
            DeviceSpec::LibTorchCpu => f.write_str("libtorch-cpu"),
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
            DeviceSpec::LibTorchCuda(_) | DeviceSpec::LibTorchCpu => cfg!(feature = "tch"),
            DeviceSpec::Wgpu => cfg!(feature = "wgpu"),
        }
    }

    /// The CUDA card this device runs on, whichever backend drives it.
    pub fn cuda_index(&self) -> Option<usize> {
        match self {
            DeviceSpec::Cuda(i) | DeviceSpec::LibTorchCuda(i) => Some(*i),
            DeviceSpec::Cpu | DeviceSpec::LibTorchCpu | DeviceSpec::Wgpu => None,
        }
    }

    /// The same backend on another card (a trial sees its card as index 0).
    pub fn on_card(self, index: usize) -> Self {
        match self {
            DeviceSpec::Cuda(_) => DeviceSpec::Cuda(index),
            DeviceSpec::LibTorchCuda(_) => DeviceSpec::LibTorchCuda(index),
            other => other,
        }
    }

    pub fn feature(&self) -> Option<&'static str> {
        match self {
            DeviceSpec::Cpu => None,
            DeviceSpec::Cuda(_) => Some("cuda"),
            DeviceSpec::LibTorchCuda(_) | DeviceSpec::LibTorchCpu => Some("tch"),
            DeviceSpec::Wgpu => Some("wgpu"),
        }
    }

    /// The burn device.
    pub fn burn_device(&self) -> Result<burn::tensor::Device, String> {
        match self {
            DeviceSpec::Cpu => Ok(burn::tensor::Device::flex()),
            #[cfg(feature = "cuda")]
            DeviceSpec::Cuda(i) => {
                check_cuda_index(self, *i)?;
                Ok(burn::tensor::Device::cuda(*i))
            }
            #[cfg(feature = "tch")]
            DeviceSpec::LibTorchCuda(i) => {
                check_cuda_index(self, *i)?;
                load_torch_cuda()?;
                #[allow(deprecated)] // burn-tch is deprecated in 0.22 but still the way to cuBLAS
                Ok(burn::tensor::Device::libtorch_cuda(*i))
            }
            #[cfg(feature = "tch")]
            #[allow(deprecated)]
            DeviceSpec::LibTorchCpu => Ok(burn::tensor::Device::libtorch()),
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

#[cfg(any(feature = "cuda", feature = "tch"))]
fn dl_error() -> String {
    // SAFETY: dlerror returns a NUL-terminated message or null.
    let why = unsafe { libc::dlerror() };
    if why.is_null() { "unknown error".to_string() } else { unsafe { std::ffi::CStr::from_ptr(why) }.to_string_lossy().into_owned() }
}

/// How many CUDA devices the driver shows this process (after CUDA_VISIBLE_DEVICES), asked of
/// the driver library directly: burn's CUDA runtime panics on a machine without one, and
/// libtorch fails on an index past the last device only at the first tensor.
#[cfg(any(feature = "cuda", feature = "tch"))]
fn cuda_devices() -> Result<usize, String> {
    static FOUND: std::sync::OnceLock<Result<usize, String>> = std::sync::OnceLock::new();
    FOUND
        .get_or_init(|| {
            // SAFETY: NUL-terminated names; the handle is kept for the process's lifetime; the two
            // symbols have the CUDA driver API's C signatures.
            unsafe {
                let lib = libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL);
                if lib.is_null() {
                    return Err(format!("this machine has no CUDA driver ({})", dl_error()));
                }
                let (init, count) = (libc::dlsym(lib, c"cuInit".as_ptr()), libc::dlsym(lib, c"cuDeviceGetCount".as_ptr()));
                if init.is_null() || count.is_null() {
                    return Err("the CUDA driver library has no cuInit or cuDeviceGetCount".into());
                }
                let init: unsafe extern "C" fn(u32) -> i32 = std::mem::transmute(init);
                let count: unsafe extern "C" fn(*mut i32) -> i32 = std::mem::transmute(count);
                const CUDA_ERROR_NO_DEVICE: i32 = 100;
                match init(0) {
                    0 => {}
                    CUDA_ERROR_NO_DEVICE => return Ok(0),
                    rc => return Err(format!("the CUDA driver did not start (cuInit error {rc})")),
                }
                let mut n = 0;
                match count(&mut n) {
                    0 => Ok(n.max(0) as usize),
                    rc => Err(format!("the CUDA driver did not count its devices (error {rc})")),
                }
            }
        })
        .clone()
}

#[cfg(any(feature = "cuda", feature = "tch"))]
fn check_cuda_index(spec: &DeviceSpec, index: usize) -> Result<(), String> {
    let n = cuda_devices().map_err(|e| format!("{spec}: {e}; use cpu or libtorch-cpu here"))?;
    if index >= n {
        let visible = std::env::var("CUDA_VISIBLE_DEVICES").map(|v| format!(" (CUDA_VISIBLE_DEVICES={v})")).unwrap_or_default();
        return Err(format!("{spec}: this machine shows {n} CUDA device(s){visible}"));
    }
    Ok(())
}

/// libtorch registers its CUDA kernels when `libtorch_cuda.so` loads. A binary built against a
/// CUDA libtorch links it already (then this only confirms it); one built against a CPU-only
/// libtorch does not, and would see no CUDA device: load it by hand, from the same folders as
/// libtorch itself (LD_LIBRARY_PATH), with an error that says what is missing.
#[cfg(feature = "tch")]
fn load_torch_cuda() -> Result<(), String> {
    static LOADED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    LOADED
        .get_or_init(|| {
            let name = c"libtorch_cuda.so";
            // SAFETY: a NUL-terminated name; the handle is kept for the process's lifetime.
            let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
            if handle.is_null() {
                let why = dl_error();
                return Err(format!(
                    "libtorch-cuda needs PyTorch's libtorch_cuda.so on LD_LIBRARY_PATH \
                     (the `torch/lib` folder of the PyTorch this binary was built against): {why}"
                ));
            }
            Ok(())
        })
        .clone()
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
    #[cfg(feature = "tch")]
    rows.push((
        "libtorch".to_string(),
        match load_torch_cuda() {
            Ok(()) => "compiled in; libtorch_cuda loaded -> `libtorch-cuda:N`".to_string(),
            Err(e) => format!("compiled in; {e}"),
        },
    ));
    #[cfg(not(feature = "tch"))]
    rows.push(("libtorch".into(), "not compiled in (build with --features tch)".into()));
    #[cfg(not(feature = "wgpu"))]
    rows.push(("wgpu".into(), "not compiled in (build with --features wgpu)".into()));
    rows
}

/// Whether `device` (autodiff or not) is burn's LibTorch backend, where maestro's PyTorch
/// extensions (fused AdamW, page-locked uploads) take over from burn's own operations.
#[cfg(feature = "tch")]
pub fn is_libtorch(device: &burn::tensor::Device) -> bool {
    matches!(device.clone().inner().as_dispatch(), burn::backend::DispatchDevice::LibTorch(_))
}

#[cfg(not(feature = "tch"))]
pub fn is_libtorch(_device: &burn::tensor::Device) -> bool {
    false
}

/// burn draws every random number (a seed, a model's initial weights, random tensors, drop path)
/// from one generator per backend, shared by all threads. The library's tests run in parallel
/// threads of one process, so each test that draws holds this lock while it does: a seeded test
/// then gets the same numbers on every run, whatever runs beside it.
#[cfg(test)]
pub(crate) fn burn_rng() -> std::sync::MutexGuard<'static, ()> {
    static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The device the model tests (unit and integration) run on: burn's CPU backend, or the one
/// `MAESTRO_TEST_DEVICE` names (`libtorch-cpu`, `libtorch-cuda:0`, `cuda:0`) in a build that has
/// it, to check another backend computes and trains the same way.
#[doc(hidden)]
pub fn test_device() -> burn::tensor::Device {
    match std::env::var("MAESTRO_TEST_DEVICE") {
        Ok(d) => d
            .parse::<DeviceSpec>()
            .and_then(|s| s.burn_device())
            .unwrap_or_else(|e| panic!("MAESTRO_TEST_DEVICE={d}: {e}")),
        Err(_) => burn::tensor::Device::flex(),
    }
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
        assert_eq!("libtorch-cuda:1".parse::<DeviceSpec>(), Ok(DeviceSpec::LibTorchCuda(1)));
        assert_eq!("libtorch-cuda:1".parse::<DeviceSpec>().unwrap().to_string(), "libtorch-cuda:1");
        assert!("libtorch-cuda:".parse::<DeviceSpec>().is_err());
    }
}
