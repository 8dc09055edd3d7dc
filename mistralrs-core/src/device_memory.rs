//! GPU memory: what a GPU has free, whether a model's weights fit before any of
//! them is allocated, and how many KV cache blocks a share of the GPU holds (as
//! vLLM's `gpu_memory_utilization`). The CPU has no such limit here: its KV
//! cache is sized in blocks or bytes.

use bytesize::ByteSize;
use candle_core::Device;

use crate::{Error, Result};

/// Free and total bytes of one GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceMemory {
    /// Bytes no one has allocated (this process and others).
    pub free: u64,
    /// The GPU's memory.
    pub total: u64,
}

impl DeviceMemory {
    /// The memory of `device` now; `None` on the CPU.
    pub fn of(device: &Device) -> Result<Option<Self>> {
        match device {
            #[cfg(feature = "cuda")]
            Device::Cuda(gpu) => {
                let (free, total) =
                    gpu.cuda_stream().context().mem_get_info().map_err(|e| {
                        Error::DeviceMemory(format!("reading free GPU memory: {e}"))
                    })?;
                Ok(Some(Self {
                    free: free as u64,
                    total: total as u64,
                }))
            }
            _ => Ok(None),
        }
    }

    /// An error with the sizes when `weights` bytes do not fit in what is free.
    pub fn check_weights_fit(self, weights: u64) -> Result<()> {
        if weights <= self.free {
            return Ok(());
        }
        Err(Error::DeviceMemory(format!(
            "the weights need {} and the GPU has {} free of {}",
            ByteSize::b(weights),
            ByteSize::b(self.free),
            ByteSize::b(self.total)
        )))
    }

    /// KV cache blocks of `block_bytes` each that fit when the process may fill
    /// `share` of the GPU's memory: what is in use already (this model's
    /// weights, other processes) counts against the share, and what the share
    /// leaves out is room for activations.
    pub fn kv_blocks(self, share: f64, block_bytes: u64) -> Result<usize> {
        let budget = (self.total as f64 * share) as u64;
        let used = self.total.saturating_sub(self.free);
        let left = budget.saturating_sub(used);
        match left / block_bytes.max(1) {
            0 => Err(Error::DeviceMemory(format!(
                "no room for a KV cache block ({}): {:.0} % of the GPU's {} is {}, of which {} is in use",
                ByteSize::b(block_bytes),
                share * 100.0,
                ByteSize::b(self.total),
                ByteSize::b(budget),
                ByteSize::b(used)
            ))),
            blocks => Ok(blocks as usize),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn the_cpu_has_no_limit_here() {
        assert_eq!(DeviceMemory::of(&Device::Cpu).unwrap(), None);
    }

    #[test]
    fn weights_larger_than_free_memory_are_refused_with_the_sizes() {
        let gpu = DeviceMemory {
            free: 3 * GIB,
            total: 80 * GIB,
        };
        assert!(gpu.check_weights_fit(3 * GIB).is_ok());
        let err = gpu.check_weights_fit(4 * GIB).unwrap_err().to_string();
        assert!(
            err.contains("4.0 GiB") && err.contains("3.0 GiB free of 80.0 GiB"),
            "{err}"
        );
    }

    #[test]
    fn the_kv_cache_takes_the_share_left_after_what_is_in_use() {
        // 80 GiB, 10 in use (weights): 90 % is 72, so 62 GiB of 1 MiB blocks.
        let gpu = DeviceMemory {
            free: 70 * GIB,
            total: 80 * GIB,
        };
        assert_eq!(gpu.kv_blocks(0.9, 1 << 20).unwrap(), 62 * 1024);
        let err = gpu.kv_blocks(0.1, 1 << 20).unwrap_err().to_string();
        assert!(
            err.contains("10 % of the GPU's 80.0 GiB is 8.0 GiB, of which 10.0 GiB is in use"),
            "{err}"
        );
    }
}
