//! Where a decoder's tensors come from, asked for by their Hugging Face names:
//! a safetensors checkpoint (dense, in the requested dtype, projections
//! optionally quantized as they load) or a GGUF file (projections and the token
//! embedding kept as stored, projections run as quantized matmuls, norms
//! dequantized to f32; or everything dequantized to a requested dtype). The decoder (`llama.rs`) does
//! not know which.

use std::cell::RefCell;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor, gguf_file};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, Linear, RmsNorm, VarBuilder};

use super::embedding::TokenEmbedding;
use super::q4_1::Q4_1Matrix;
#[cfg(target_arch = "x86_64")]
use super::q8_0::Q8_0Matrix;
use super::quantize::Quantizer;
use crate::{Error, Result};

/// A projection `x W^T (+ b)`: dense, or quantized.
#[derive(Debug, Clone)]
pub(crate) enum Projection {
    /// A dense weight (safetensors).
    Dense(Linear),
    /// A quantized weight (GGUF or in-situ quantized) with an optional f32 bias.
    Quantized {
        /// The weight, `[out, in]`.
        weight: QuantizedWeight,
        /// The bias, `[out]`.
        bias: Option<Tensor>,
    },
}

/// A quantized `[out, in]` weight and the kernel that multiplies by it.
#[derive(Debug, Clone)]
pub(crate) enum QuantizedWeight {
    /// candle's quantized matmul.
    Candle(QMatMul),
    /// Q4_1 on the CPU: our vectorized kernel (candle's is scalar there);
    /// Q4_K converted exactly (candle's x86 kernel keeps a second copy).
    Q4_1(Q4_1Matrix),
    /// Q8_0 on a CPU with AVX-512 VNNI: our tiles (candle's kernel is AVX2).
    #[cfg(target_arch = "x86_64")]
    Q8_0(Q8_0Matrix),
}

impl QuantizedWeight {
    /// The kernel for `tensor`'s type and device (candle's shares `tensor`).
    pub(crate) fn new(tensor: Arc<QTensor>) -> Result<Self> {
        let rows_fit = tensor.shape().dims2().is_ok_and(|(_, cols)| cols % 64 == 0);
        if tensor.dtype() == GgmlDType::Q4_1 && tensor.device().is_cpu() && rows_fit {
            return Ok(Self::Q4_1(Q4_1Matrix::new(&tensor)?));
        }
        if tensor.dtype() == GgmlDType::Q4K && tensor.device().is_cpu() {
            return Ok(Self::Q4_1(Q4_1Matrix::from_q4k(&tensor)?));
        }
        #[cfg(target_arch = "x86_64")]
        if tensor.dtype() == GgmlDType::Q8_0
            && tensor.device().is_cpu()
            && rows_fit
            && let Some(matrix) = Q8_0Matrix::new(&tensor)?
        {
            return Ok(Self::Q8_0(matrix));
        }
        Ok(Self::Candle(QMatMul::from_arc(tensor)?))
    }

    /// Whether the kernel runs on `table` itself (a tied head on candle's).
    fn runs_on(&self, table: &Arc<QTensor>) -> bool {
        matches!(self, Self::Candle(QMatMul::QTensor(weight)) if Arc::ptr_eq(weight, table))
    }

    /// Memory the weight takes.
    fn bytes(&self) -> usize {
        match self {
            Self::Candle(QMatMul::QTensor(weight)) => weight.storage_size_in_bytes(),
            Self::Candle(QMatMul::Tensor(weight) | QMatMul::TensorF16(weight)) => {
                tensor_bytes(weight)
            }
            Self::Q4_1(matrix) => matrix.bytes(),
            #[cfg(target_arch = "x86_64")]
            Self::Q8_0(matrix) => matrix.bytes(),
        }
    }

    /// `x W^T` for `x` `[tokens, in]` in f32, contiguous.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Candle(matmul) => Ok(matmul.forward(x)?),
            Self::Q4_1(matrix) => matrix.forward(x),
            #[cfg(target_arch = "x86_64")]
            Self::Q8_0(matrix) => matrix.forward(x),
        }
    }
}

/// Memory a dense tensor takes.
pub(crate) fn tensor_bytes(tensor: &Tensor) -> usize {
    tensor.elem_count() * tensor.dtype().size_in_bytes()
}

impl Projection {
    /// Memory the weight and bias take.
    pub(crate) fn bytes(&self) -> usize {
        match self {
            Self::Dense(linear) => {
                tensor_bytes(linear.weight()) + linear.bias().map_or(0, tensor_bytes)
            }
            Self::Quantized { weight, bias } => {
                weight.bytes() + bias.as_ref().map_or(0, tensor_bytes)
            }
        }
    }

    /// A quantized weight with its bias, kept in f32 for the f32 product.
    fn quantized(weight: impl Into<Arc<QTensor>>, bias: Option<&Tensor>) -> Result<Self> {
        Ok(Self::Quantized {
            weight: QuantizedWeight::new(weight.into())?,
            bias: bias.map(|b| b.to_dtype(DType::F32)).transpose()?,
        })
    }

    /// Whether this (a tied output head) runs on `embedding`'s own table, so
    /// that its memory counts once.
    pub(crate) fn shares_table_of(&self, embedding: &TokenEmbedding) -> bool {
        match (self, embedding) {
            (Self::Dense(linear), TokenEmbedding::Dense(embedding)) => {
                linear.weight().id() == embedding.embeddings().id()
            }
            (Self::Quantized { weight, .. }, TokenEmbedding::Stored(table)) => {
                weight.runs_on(table)
            }
            _ => false,
        }
    }

    /// `x` is `[tokens, in]`; quantized matmuls take it in f32 and contiguous
    /// (candle's quantized kernels read rows in place), and give back `x`'s dtype.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Dense(linear) => Ok(linear.forward(x)?),
            Self::Quantized { weight, bias } => {
                let y = weight.forward(&x.to_dtype(DType::F32)?.contiguous()?)?;
                let y = match bias {
                    Some(bias) => y.broadcast_add(bias)?,
                    None => y,
                };
                Ok(y.to_dtype(x.dtype())?)
            }
        }
    }
}

/// The tensors of a decoder by Hugging Face name (`model.layers.0.self_attn.q_proj`).
pub(crate) trait WeightSource {
    /// The projection `name` (`name.weight`, `name.bias` when `bias`).
    fn projection(
        &self,
        name: &str,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
    ) -> Result<Projection>;
    /// The embedding `name`.
    fn embedding(&self, name: &str, vocab: usize, hidden: usize) -> Result<TokenEmbedding>;
    /// The RMSNorm `name`.
    fn rms_norm(&self, name: &str, size: usize, eps: f64) -> Result<RmsNorm>;
    /// The output head: `lm_head` when the source has one, else the embedding
    /// `embed` reused.
    fn output_head(
        &self,
        embed: &TokenEmbedding,
        hidden: usize,
        vocab: usize,
    ) -> Result<Projection>;
    /// The dtype activations run in.
    fn dtype(&self) -> DType;
    /// The device tensors live on.
    fn device(&self) -> &Device;
}

/// A safetensors checkpoint through candle's `VarBuilder`.
pub(crate) struct Safetensors<'a> {
    pub(crate) vb: VarBuilder<'a>,
    pub(crate) tie_word_embeddings: bool,
    /// Quantizes the projections as they load (`--quantize`).
    pub(crate) quantizer: Option<Quantizer>,
}

impl WeightSource for Safetensors<'_> {
    fn projection(
        &self,
        name: &str,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
    ) -> Result<Projection> {
        let linear = candle_nn::linear_b(in_dim, out_dim, bias, self.vb.pp(name))?;
        let Some(quantizer) = &self.quantizer else {
            return Ok(Projection::Dense(linear));
        };
        match quantizer.quantize(linear.weight())? {
            Some(weight) => Projection::quantized(weight, linear.bias()),
            None => Ok(Projection::Dense(linear)),
        }
    }

    fn embedding(&self, name: &str, vocab: usize, hidden: usize) -> Result<TokenEmbedding> {
        Ok(TokenEmbedding::Dense(candle_nn::embedding(
            vocab,
            hidden,
            self.vb.pp(name),
        )?))
    }

    fn rms_norm(&self, name: &str, size: usize, eps: f64) -> Result<RmsNorm> {
        Ok(candle_nn::rms_norm(size, eps, self.vb.pp(name))?)
    }

    fn output_head(
        &self,
        embed: &TokenEmbedding,
        hidden: usize,
        vocab: usize,
    ) -> Result<Projection> {
        let tied = self.tie_word_embeddings || !self.vb.contains_tensor("lm_head.weight");
        match embed {
            TokenEmbedding::Dense(embed) if tied => Ok(Projection::Dense(Linear::new(
                embed.embeddings().clone(),
                None,
            ))),
            _ => self.projection("lm_head", hidden, vocab, false),
        }
    }

    fn dtype(&self) -> DType {
        self.vb.dtype()
    }

    fn device(&self) -> &Device {
        self.vb.device()
    }
}

/// Tensor types this server runs from a GGUF file.
const GGUF_TYPES: [GgmlDType; 13] = [
    GgmlDType::F32,
    GgmlDType::F16,
    GgmlDType::BF16,
    GgmlDType::Q4_0,
    GgmlDType::Q4_1,
    GgmlDType::Q5_0,
    GgmlDType::Q5_1,
    GgmlDType::Q8_0,
    GgmlDType::Q2K,
    GgmlDType::Q3K,
    GgmlDType::Q4K,
    GgmlDType::Q5K,
    GgmlDType::Q6K,
];

/// A GGUF file's tensors. llama.cpp stores the query and key rows of llama
/// models permuted for its rotary layout; they are put back in Hugging Face
/// order (whole rows move, so quantized blocks stay as they are), and the
/// decoder's rotary embedding stays the same for both sources.
pub(crate) struct Gguf {
    pub(crate) path: PathBuf,
    pub(crate) content: gguf_file::Content,
    pub(crate) file: RefCell<File>,
    pub(crate) device: Device,
    /// Query and key heads when q/k rows are permuted (llama); `None` otherwise.
    pub(crate) permuted_heads: Option<(usize, usize)>,
    /// Every tensor dequantized to this dtype (`--dtype`), projections included
    /// unless requantized; `None` keeps projections as stored and the rest in f32.
    pub(crate) dense_dtype: Option<DType>,
    /// Requantizes the projections to another type (`--quantize`).
    pub(crate) quantizer: Option<Quantizer>,
}

/// The GGUF name of a Hugging Face tensor name (without `.weight`/`.bias`).
fn gguf_name(name: &str) -> String {
    if let Some(rest) = name.strip_prefix("model.layers.") {
        let (layer, part) = rest.split_once('.').unwrap_or((rest, ""));
        let part = match part {
            "self_attn.q_proj" => "attn_q",
            "self_attn.k_proj" => "attn_k",
            "self_attn.v_proj" => "attn_v",
            "self_attn.o_proj" => "attn_output",
            "mlp.gate_proj" => "ffn_gate",
            "mlp.up_proj" => "ffn_up",
            "mlp.down_proj" => "ffn_down",
            "input_layernorm" => "attn_norm",
            "post_attention_layernorm" => "ffn_norm",
            other => other,
        };
        return format!("blk.{layer}.{part}");
    }
    match name {
        "model.embed_tokens" => "token_embd".into(),
        "model.norm" => "output_norm".into(),
        "lm_head" => "output".into(),
        other => other.into(),
    }
}

impl Gguf {
    fn tensor(&self, name: &str, device: &Device) -> Result<QTensor> {
        let info = self
            .content
            .tensor_infos
            .get(name)
            .ok_or_else(|| Error::files(&self.path, format!("tensor `{name}` is missing")))?;
        if !GGUF_TYPES.contains(&info.ggml_dtype) {
            return Err(Error::files(
                &self.path,
                format!(
                    "tensor `{name}` has type {:?}; supported: {}",
                    info.ggml_dtype,
                    supported_types()
                ),
            ));
        }
        let mut file = self.file.borrow_mut();
        self.content
            .tensor(&mut *file, name, device)
            .map_err(|e| Error::files(&self.path, format!("tensor `{name}`: {e}")))
    }

    /// Tensor `name` with the shape the decoder expects (`[out, in]`, `[n]`).
    fn shaped(&self, name: &str, dims: &[usize]) -> Result<QTensor> {
        self.shaped_on(name, dims, &self.device)
    }

    /// `shaped`, read onto `device`.
    fn shaped_on(&self, name: &str, dims: &[usize], device: &Device) -> Result<QTensor> {
        let tensor = self.tensor(name, device)?;
        if tensor.shape().dims() != dims {
            return Err(Error::files(
                &self.path,
                format!(
                    "tensor `{name}` has shape {:?}, expected {dims:?}",
                    tensor.shape().dims()
                ),
            ));
        }
        Ok(tensor)
    }

    fn dense(&self, name: &str, dims: &[usize]) -> Result<Tensor> {
        Ok(self
            .shaped(name, dims)?
            .dequantize(&self.device)?
            .to_dtype(self.dtype())?)
    }

    /// A stored weight as a projection: requantized, dequantized to the
    /// requested dtype, or run as stored.
    fn project(&self, weight: QTensor, bias: Option<Tensor>) -> Result<Projection> {
        let dense = |weight: Tensor| -> Result<Projection> {
            let weight = weight.to_dtype(self.dtype())?;
            let bias = bias
                .as_ref()
                .map(|b| b.to_dtype(self.dtype()))
                .transpose()?;
            Ok(Projection::Dense(Linear::new(weight, bias)))
        };
        match (&self.quantizer, self.dense_dtype) {
            (Some(quantizer), _) => {
                let weight = weight.dequantize(&self.device)?;
                match quantizer.quantize(&weight)? {
                    Some(requantized) => Projection::quantized(requantized, bias.as_ref()),
                    None => dense(weight),
                }
            }
            (None, Some(_)) => dense(weight.dequantize(&self.device)?),
            (None, None) => Projection::quantized(weight, bias.as_ref()),
        }
    }

    /// Undoes llama.cpp's q/k row permutation for `heads` heads.
    fn unpermute(&self, tensor: QTensor, heads: usize) -> Result<QTensor> {
        let (rows, cols) = tensor.shape().dims2()?;
        let head_dim = rows / heads;
        let data = tensor.data()?;
        let row_bytes = data.len() / rows;
        let mut out = vec![0u8; data.len()];
        for head in 0..heads {
            for half in 0..2 {
                for j in 0..head_dim / 2 {
                    let hf_row = head * head_dim + half * (head_dim / 2) + j;
                    let gguf_row = head * head_dim + 2 * j + half;
                    out[hf_row * row_bytes..(hf_row + 1) * row_bytes]
                        .copy_from_slice(&data[gguf_row * row_bytes..(gguf_row + 1) * row_bytes]);
                }
            }
        }
        let storage = QStorage::from_data(out.into(), &self.device, tensor.dtype())?;
        Ok(QTensor::new(storage, (rows, cols))?)
    }
}

/// The supported GGUF tensor types, for messages.
pub fn supported_types() -> String {
    GGUF_TYPES
        .iter()
        .map(|t| format!("{t:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl WeightSource for Gguf {
    fn projection(
        &self,
        name: &str,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
    ) -> Result<Projection> {
        let base = gguf_name(name);
        let mut weight = self.shaped(&format!("{base}.weight"), &[out_dim, in_dim])?;
        if let Some((heads, kv_heads)) = self.permuted_heads {
            if name.ends_with("self_attn.q_proj") {
                weight = self.unpermute(weight, heads)?;
            } else if name.ends_with("self_attn.k_proj") {
                weight = self.unpermute(weight, kv_heads)?;
            }
        }
        let bias = if bias {
            Some(self.dense(&format!("{base}.bias"), &[out_dim])?)
        } else {
            None
        };
        self.project(weight, bias)
    }

    fn embedding(&self, name: &str, vocab: usize, hidden: usize) -> Result<TokenEmbedding> {
        let name = format!("{}.weight", gguf_name(name));
        if self.dense_dtype.is_some() {
            let weights = self.dense(&name, &[vocab, hidden])?;
            return Ok(TokenEmbedding::Dense(Embedding::new(weights, hidden)));
        }
        let table = self.shaped_on(&name, &[vocab, hidden], &Device::Cpu)?;
        Ok(TokenEmbedding::Stored(Arc::new(table)))
    }

    fn rms_norm(&self, name: &str, size: usize, eps: f64) -> Result<RmsNorm> {
        let weight = self.dense(&format!("{}.weight", gguf_name(name)), &[size])?;
        Ok(RmsNorm::new(weight, eps))
    }

    fn output_head(
        &self,
        embed: &TokenEmbedding,
        hidden: usize,
        vocab: usize,
    ) -> Result<Projection> {
        let tied = !self.content.tensor_infos.contains_key("output.weight");
        // A tied head on the CPU runs on the embedding's own table.
        if let (true, TokenEmbedding::Stored(table), Device::Cpu) = (tied, embed, &self.device) {
            return Projection::quantized(Arc::clone(table), None);
        }
        let name = if tied {
            "token_embd.weight"
        } else {
            "output.weight"
        };
        let weight = self.shaped(name, &[vocab, hidden])?;
        // Only the layers are requantized, as with safetensors.
        match self.dense_dtype {
            Some(dtype) => Ok(Projection::Dense(Linear::new(
                weight.dequantize(&self.device)?.to_dtype(dtype)?,
                None,
            ))),
            None => Projection::quantized(weight, None),
        }
    }

    fn dtype(&self) -> DType {
        self.dense_dtype.unwrap_or(DType::F32)
    }

    fn device(&self) -> &Device {
        &self.device
    }
}

impl std::fmt::Debug for Gguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gguf({})", self.path.display())
    }
}

/// Opens `path` as a GGUF file; the error names the file and what is wrong.
pub(crate) fn open_gguf(path: &Path) -> Result<(gguf_file::Content, File)> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let content = gguf_file::Content::read(&mut file)
        .map_err(|e| Error::files(path, format!("not a readable GGUF file: {e}")))?;
    Ok((content, file))
}
