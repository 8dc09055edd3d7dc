//! `--device cpu|cuda[:N]`: where the models run. The device is opened once at
//! start-up, so a GPU that the build or the machine lacks is a clear error
//! before any model loads.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

/// A device as people name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// The CPU (the default).
    #[default]
    Cpu,
    /// NVIDIA GPU number N (`cuda` means `cuda:0`).
    Cuda(usize),
}

impl DeviceSpec {
    /// The device, or an error naming it and the cause: a build without CUDA
    /// support, or no such GPU (no driver, no device of that number).
    pub fn open(self) -> anyhow::Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(n) => Device::new_cuda(n).map_err(|e| match e {
                candle_core::Error::NotCompiledWithCudaSupport => anyhow::anyhow!(
                    "device {self}: this build has no CUDA support, it runs models on the CPU only (device cpu); build with `--features cuda` for NVIDIA GPUs"
                ),
                other => anyhow::anyhow!(
                    "device {self}: NVIDIA GPU {n} can't be opened ({other}); `nvidia-smi` shows whether the driver sees it"
                ),
            }),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let unknown = || format!("`{s}` is not a device; use cpu, cuda or cuda:N");
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(unknown),
        }
    }
}

impl<'de> serde::Deserialize<'de> for DeviceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_unknown_ones_say_what_is_allowed() {
        assert_eq!("cpu".parse(), Ok(DeviceSpec::Cpu));
        assert_eq!("CUDA".parse(), Ok(DeviceSpec::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceSpec::Cuda(3)));
        for bad in ["tpu", "cuda:", "cuda:-1", "cuda:x", "gpu"] {
            let err = bad.parse::<DeviceSpec>().unwrap_err();
            assert!(err.contains(bad) && err.contains("cuda:N"), "{err}");
        }
        assert_eq!(DeviceSpec::Cuda(2).to_string(), "cuda:2");
    }

    #[test]
    #[cfg(not(feature = "cuda"))]
    fn the_cpu_opens_and_a_gpu_this_build_lacks_is_named() {
        assert!(DeviceSpec::Cpu.open().unwrap().is_cpu());
        let err = DeviceSpec::Cuda(0).open().unwrap_err().to_string();
        assert!(
            err.contains("cuda:0") && err.contains("no CUDA support"),
            "{err}"
        );
    }
}
