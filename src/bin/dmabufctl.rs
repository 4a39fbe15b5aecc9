//! `dmabufctl`: the command-line front end; all logic lives in `dmabufd::cli`.

fn main() {
    std::process::exit(dmabufd::cli::main());
}
