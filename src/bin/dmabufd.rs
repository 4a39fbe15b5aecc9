//! `dmabufd`: the binder service; all logic lives in `dmabufd::service`.

fn main() {
    std::process::exit(dmabufd::service::main());
}
