//! Writes the SmolLM2 GGUF once per tensor type the model tests serve:
//! `cargo run --release -p mistralrs-core --example requantize_gguf -- SOURCE.gguf DIR`
//! gives `DIR/<type>.gguf` for each, the files
//! `scripts/make_gguf_types_reference.mjs` has llama.cpp read.

#[path = "../tests/common/requantize.rs"]
mod requantize;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(source), Some(dir)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: requantize_gguf SOURCE.gguf DIR");
    };
    let dir = std::path::Path::new(&dir);
    std::fs::create_dir_all(dir)?;
    for target in requantize::TYPES {
        let dest = dir.join(format!("{target}.gguf"));
        requantize::requantize(source.as_ref(), target, &dest)?;
        println!("{}", dest.display());
    }
    Ok(())
}
