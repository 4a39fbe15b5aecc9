//! Writes `dmabufctl`'s man pages and its bash, zsh and fish completions into a directory, from
//! the same clap definition the binary parses with, so they cannot drift from `--help`.
//!
//! Cargo-only (clap_mangen and clap_complete are dev-dependencies, not AOSP crates):
//! `cargo run --example dmabufctl-docs -- DIR`, as packaging/build-deb does.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;
use dmabufd::cli::Cli;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: dmabufctl-docs DIR");
        return ExitCode::from(2);
    };
    match write_all(&dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dmabufctl-docs: {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}

fn write_all(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    // dmabufctl.1 and one page per subcommand (dmabufctl-dump.1, ...), which it refers to.
    clap_mangen::generate_to(Cli::command(), dir)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut Cli::command(), "dmabufctl", dir)?;
    }
    Ok(())
}
