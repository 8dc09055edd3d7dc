//! What the KV cache stores per value (`--kv-cache-dtype`), by the names
//! people type.

use std::fmt;
use std::str::FromStr;

use candle_core::DType;

/// Values per Q8_0 block: one scale for each run of this many values.
pub(crate) const Q8_0_BLOCK: usize = 32;

/// The KV cache's element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvDtype {
    /// 32-bit floats.
    F32,
    /// 16-bit IEEE floats (the CPU default, as llama.cpp).
    F16,
    /// bfloat16.
    Bf16,
    /// llama.cpp's Q8_0: per 32 values of a head, an f16 scale and 32 signed
    /// bytes (34 bytes, about half of f16's 64).
    Q8_0,
}

impl KvDtype {
    /// The candle dtype of a float cache; `None` for Q8_0.
    pub fn float(self) -> Option<DType> {
        match self {
            Self::F32 => Some(DType::F32),
            Self::F16 => Some(DType::F16),
            Self::Bf16 => Some(DType::BF16),
            Self::Q8_0 => None,
        }
    }

    /// Bytes `values` values take (a multiple of 32 for Q8_0).
    pub fn bytes(self, values: usize) -> usize {
        match self.float() {
            Some(dtype) => values * dtype.size_in_bytes(),
            None => values / Q8_0_BLOCK * (Q8_0_BLOCK + 2),
        }
    }
}

impl fmt::Display for KvDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
            Self::Q8_0 => "q8_0",
        })
    }
}

impl FromStr for KvDtype {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(Self::F32),
            "f16" | "float16" | "half" => Ok(Self::F16),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            "q8_0" => Ok(Self::Q8_0),
            _ => Err(format!(
                "`{s}` is not a KV cache type; use f32, f16, bf16 or q8_0"
            )),
        }
    }
}

impl<'de> serde::Deserialize<'de> for KvDtype {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_say_what_is_allowed() {
        for t in [KvDtype::F32, KvDtype::F16, KvDtype::Bf16, KvDtype::Q8_0] {
            assert_eq!(t.to_string().parse::<KvDtype>(), Ok(t));
        }
        assert_eq!("Q8_0".parse::<KvDtype>(), Ok(KvDtype::Q8_0));
        let err = "int4".parse::<KvDtype>().unwrap_err();
        assert!(err.contains("int4") && err.contains("q8_0"), "{err}");
        assert_eq!(KvDtype::Q8_0.bytes(64), 68);
        assert_eq!(KvDtype::F16.bytes(64), 128);
    }
}
