//! The token embedding: a dense table, or a GGUF table kept in its stored type.
//! A lookup of the stored table dequantizes only the rows asked for, as
//! llama.cpp's `get_rows` does: in f32 the table would take 4 bytes a value
//! (1 GiB for Llama 3's 128k x 2048 vocabulary), as stored Q6_K 0.82 and Q8_0
//! 1.06, and a tied output head runs on the same bytes.

use std::sync::Arc;

use candle_core::quantized::{QStorage, QTensor};
use candle_core::{Device, Module, Tensor};
use candle_nn::Embedding;

use super::weights::tensor_bytes;
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub(crate) enum TokenEmbedding {
    /// Safetensors, or GGUF dequantized to a requested dtype.
    Dense(Embedding),
    /// `[vocab, hidden]` as the GGUF file stores it, on the CPU (the looked-up
    /// rows go to the model's device, as llama.cpp keeps its input embedding
    /// on the CPU).
    Stored(Arc<QTensor>),
}

impl TokenEmbedding {
    /// The rows of `ids` (`[tokens]`, u32): `[tokens, hidden]`.
    pub(crate) fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let table = match self {
            Self::Dense(embedding) => return Ok(embedding.forward(ids)?),
            Self::Stored(table) => table,
        };
        let (vocab, hidden) = table.shape().dims2()?;
        let data = table.data()?;
        let row_bytes = data.len() / vocab;
        let tokens = ids.to_vec1::<u32>()?;
        let mut rows = Vec::with_capacity(tokens.len() * row_bytes);
        for &id in &tokens {
            let id = id as usize;
            if id >= vocab {
                return Err(Error::InvalidRequest(format!(
                    "token id {id} is outside the vocabulary of {vocab}"
                )));
            }
            rows.extend_from_slice(&data[id * row_bytes..(id + 1) * row_bytes]);
        }
        let rows = QStorage::from_data(rows.into(), &Device::Cpu, table.dtype())?;
        let rows = QTensor::new(rows, (tokens.len(), hidden))?.dequantize(&Device::Cpu)?;
        Ok(rows.to_device(ids.device())?)
    }

    /// Memory the table takes.
    pub(crate) fn bytes(&self) -> usize {
        match self {
            Self::Dense(embedding) => tensor_bytes(embedding.embeddings()),
            Self::Stored(table) => table.storage_size_in_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::GgmlDType;

    use super::*;
    use crate::model::int8_tiles::random;

    /// Looking rows up in the stored table gives the rows of the whole table
    /// dequantized, for a block type, a K-quant and a float type.
    #[test]
    fn stored_rows_are_the_dequantized_tables_rows() {
        let (vocab, hidden) = (40, 512);
        let values =
            Tensor::from_vec(random(vocab * hidden, 3), (vocab, hidden), &Device::Cpu).unwrap();
        let ids = Tensor::new(&[7u32, 0, 39, 7], &Device::Cpu).unwrap();
        for dtype in [GgmlDType::Q8_0, GgmlDType::Q6K, GgmlDType::F16] {
            let table = QTensor::quantize(&values, dtype).unwrap();
            let whole = table.dequantize(&Device::Cpu).unwrap();
            let expected: Vec<Vec<f32>> = whole.index_select(&ids, 0).unwrap().to_vec2().unwrap();
            let stored = TokenEmbedding::Stored(Arc::new(table));
            let got: Vec<Vec<f32>> = stored.forward(&ids).unwrap().to_vec2().unwrap();
            assert_eq!(got, expected, "{dtype:?}");
        }
    }

    #[test]
    fn a_token_outside_the_vocabulary_is_an_error() {
        let values = Tensor::zeros((4, 32), candle_core::DType::F32, &Device::Cpu).unwrap();
        let table = QTensor::quantize(&values, GgmlDType::Q8_0).unwrap();
        let ids = Tensor::new(&[1u32, 4], &Device::Cpu).unwrap();
        let error = TokenEmbedding::Stored(Arc::new(table))
            .forward(&ids)
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("token id 4 is outside the vocabulary of 4"),
            "{error}"
        );
    }
}
