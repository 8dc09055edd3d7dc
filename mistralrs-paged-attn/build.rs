//! With the `cuda` feature, compiles `kernels/*.cu` to PTX with candle's kernel
//! build tool (cudaforge; nvcc from `scripts/cuda-toolchain`), for
//! `cuda_decode.rs` to load at run time.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    #[cfg(feature = "cuda")]
    {
        println!("cargo::rerun-if-changed=kernels");
        let out_dir =
            std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
        let ptx = cudaforge::KernelBuilder::new()
            .source_dir("kernels")
            .arg("-std=c++17")
            .arg("-O3")
            .build_ptx()
            .unwrap_or_else(|e| panic!("compiling the CUDA kernels: {e}"));
        ptx.write(out_dir.join("ptx.rs"))
            .unwrap_or_else(|e| panic!("writing ptx.rs: {e}"));
    }
}
