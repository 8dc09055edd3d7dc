//! Nothing to use: this crate only pins dependency features (see its Cargo.toml).
