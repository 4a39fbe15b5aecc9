//! Where a test finds the project's own binaries, the same way under Cargo and under atest.
//!
//! Soong sets no `CARGO_BIN_EXE_*` variable: a `rust_test` gets its binaries through
//! `data_bins` (Android.bp), installed beside the test executable in
//! `/data/local/tmp/<module>/`. Cargo builds them elsewhere and says where at compile time.

use std::path::PathBuf;

/// The project binary `name`: beside this test executable (Soong's `data_bins`), else at
/// `cargo_path` (pass `option_env!("CARGO_BIN_EXE_<name>")`, set only by Cargo), else `name`
/// itself, looked up on `PATH`.
pub fn project_bin(name: &str, cargo_path: Option<&str>) -> PathBuf {
    let beside = std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.join(name)));
    beside
        .filter(|p| p.is_file())
        .or_else(|| cargo_path.map(PathBuf::from).filter(|p| p.is_file()))
        .unwrap_or_else(|| PathBuf::from(name))
}
