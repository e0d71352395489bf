//! Where a stage runs its model: the `device` option, and whether this build and machine have a
//! GPU.
//!
//! A stage reads `device` with `Placement::from_options` when the pipeline is checked, so
//! `device = "gpu"` in a CPU build is an error at the key (from `lai check` too), and resolves it
//! with `Placement::resolve` when a worker starts: `"auto"` becomes the GPU where this build has
//! CUDA and the machine a GPU, and `"gpu"` without one stops the run with the reason.

use std::sync::OnceLock;

use crate::options::{Default, Diagnostics, OptionSpec, Options, Ty, opt};

pub const DEVICE: OptionSpec = opt(
    "device",
    Ty::Choice(&["auto", "cpu", "gpu"]),
    Default::Value("\"auto\""),
    "Where the model runs: \"gpu\" (an NVIDIA GPU, with the CUDA build of lai: scripts/build-cuda.sh), \"cpu\", or \"auto\": the GPU when this build has CUDA and the machine a GPU, else the CPU.",
).speed();

/// Where a worker runs its model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Gpu,
}

impl Device {
    /// A sizing option where 0 means "the device's own": `value`, else `cpu` or `gpu`.
    pub fn pick(self, value: usize, cpu: usize, gpu: usize) -> usize {
        match (value, self) {
            (0, Device::Cpu) => cpu,
            (0, Device::Gpu) => gpu,
            (n, _) => n,
        }
    }
}

/// A stage's `device` option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    Auto,
    Cpu,
    Gpu,
}

impl Placement {
    pub fn from_options(options: &Options, diag: &mut Diagnostics) -> Option<Placement> {
        match options.str("device").as_str() {
            "cpu" => Some(Placement::Cpu),
            "gpu" if !cfg!(feature = "cuda") => {
                diag.error(
                    &options.span_of("device"),
                    format!(
                        "`device` in {} is \"gpu\", but this lai is a CPU build; build the CUDA one with scripts/build-cuda.sh, or set device = \"cpu\"",
                        options.context
                    ),
                );
                None
            }
            "gpu" => Some(Placement::Gpu),
            _ => Some(Placement::Auto),
        }
    }

    /// The device a worker uses; `"gpu"` where no GPU is usable is an error saying why.
    pub fn resolve(self) -> anyhow::Result<Device> {
        match (self, gpus()) {
            (Placement::Cpu, _) | (Placement::Auto, Err(_)) => Ok(Device::Cpu),
            (Placement::Auto | Placement::Gpu, Ok(_)) => Ok(Device::Gpu),
            (Placement::Gpu, Err(why)) => {
                anyhow::bail!(
                    "it has device = \"gpu\", but {why}; set device = \"cpu\" or \"auto\""
                )
            }
        }
    }
}

/// How many CUDA GPUs this process can use, or why it can use none.
pub fn gpus() -> Result<usize, &'static str> {
    static FOUND: OnceLock<Result<usize, String>> = OnceLock::new();
    FOUND
        .get_or_init(cuda_devices)
        .as_ref()
        .map(|n| *n)
        .map_err(String::as_str)
}

#[cfg(feature = "cuda")]
fn cuda_devices() -> Result<usize, String> {
    use std::ffi::{CStr, c_char, c_int};
    // The CUDA runtime, which the CUDA builds of whisper.cpp and llama.cpp link.
    unsafe extern "C" {
        fn cudaGetDeviceCount(count: *mut c_int) -> c_int;
        fn cudaGetErrorString(error: c_int) -> *const c_char;
    }
    let mut count: c_int = 0;
    // SAFETY: plain C calls; the error string is a static C string owned by the runtime.
    let error = unsafe { cudaGetDeviceCount(&mut count) };
    if error != 0 {
        let why = unsafe { CStr::from_ptr(cudaGetErrorString(error)) };
        return Err(format!(
            "no CUDA GPU is usable here (CUDA says: {}; is the NVIDIA driver 580 or newer installed, and CUDA_VISIBLE_DEVICES not empty?)",
            why.to_string_lossy()
        ));
    }
    match usize::try_from(count) {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("no CUDA GPU was found".to_string()),
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda_devices() -> Result<usize, String> {
    Err("this lai is a CPU build (scripts/build-cuda.sh builds the CUDA one)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    // On a machine without a GPU "auto" falls back to the CPU and "gpu" fails with the reason.
    #[test]
    fn placement_without_a_gpu() {
        if gpus().is_ok() {
            return; // a GPU machine: covered by the GPU benchmark instead.
        }
        assert_eq!(Placement::Auto.resolve().unwrap(), Device::Cpu);
        assert_eq!(Placement::Cpu.resolve().unwrap(), Device::Cpu);
        let err = Placement::Gpu.resolve().unwrap_err().to_string();
        assert!(err.contains("device = \"gpu\""), "{err}");
        assert!(err.contains("set device = \"cpu\""), "{err}");
    }
}
