//! Writes the GGUF files the model tests serve, for the scripts that have
//! llama.cpp read the same bytes:
//! `cargo run --release -p mistralrs-core --example write_test_ggufs -- SMOLLM2.gguf DIR`
//! gives `DIR/<type>.gguf`, SmolLM2 in each tensor type
//! (`scripts/make_gguf_types_reference.mjs`), and `DIR/qwen2.gguf`
//! (`scripts/make_qwen2_gguf_reference.mjs`).

#[path = "../tests/common/qwen2_gguf.rs"]
mod qwen2_gguf;
#[path = "../tests/common/requantize.rs"]
mod requantize;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(source), Some(dir)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: write_test_ggufs SMOLLM2.gguf DIR");
    };
    let dir = std::path::Path::new(&dir);
    std::fs::create_dir_all(dir)?;
    for target in requantize::TYPES {
        let dest = dir.join(format!("{target}.gguf"));
        requantize::requantize(source.as_ref(), target, &dest)?;
        println!("{}", dest.display());
    }
    let dest = dir.join("qwen2.gguf");
    qwen2_gguf::write(env!("CARGO_MANIFEST_DIR").as_ref(), &dest)?;
    println!("{}", dest.display());
    Ok(())
}
