//! Writes the `demo` model's folder: `cargo run -p mistralrs-core --example
//! write_demo_model -- <dir>`. The reference script uses it to build the exact
//! folder the engine loads.

fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: write_demo_model <dir>"))?;
    mistralrs_core::demo::write_demo_model(std::path::Path::new(&dir))?;
    println!("{dir}");
    Ok(())
}
