//! The float types a user picks for weights (`--dtype`) and for the KV cache
//! (`--kv-cache-dtype`), by the names people type.

use std::fmt;
use std::str::FromStr;

use candle_core::DType;

/// A float type for dense tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatType {
    /// 32-bit IEEE float.
    F32,
    /// 16-bit IEEE float.
    F16,
    /// bfloat16: f32's range with 8 bits of mantissa.
    Bf16,
}

impl FloatType {
    /// candle's dtype for it.
    pub fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
            Self::Bf16 => DType::BF16,
        }
    }

    /// The KV cache type of the same floats.
    pub fn kv_dtype(self) -> mistralrs_paged_attn::KvDtype {
        use mistralrs_paged_attn::KvDtype;
        match self {
            Self::F32 => KvDtype::F32,
            Self::F16 => KvDtype::F16,
            Self::Bf16 => KvDtype::Bf16,
        }
    }

    /// Bytes per value.
    pub fn size_in_bytes(self) -> usize {
        self.dtype().size_in_bytes()
    }
}

impl fmt::Display for FloatType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
        })
    }
}

impl FromStr for FloatType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(Self::F32),
            "f16" | "float16" | "half" => Ok(Self::F16),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            _ => Err(format!("`{s}` is not a float type; use f32, f16 or bf16")),
        }
    }
}

impl<'de> serde::Deserialize<'de> for FloatType {
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
        for t in [FloatType::F32, FloatType::F16, FloatType::Bf16] {
            assert_eq!(t.to_string().parse::<FloatType>(), Ok(t));
        }
        assert_eq!("BF16".parse::<FloatType>(), Ok(FloatType::Bf16));
        let err = "f8".parse::<FloatType>().unwrap_err();
        assert!(
            err.contains("f8") && err.contains("f32, f16 or bf16"),
            "{err}"
        );
    }
}
