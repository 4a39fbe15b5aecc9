//! Generates the rsbinder stubs for `aidl/` on Cargo builds. Soong builds get theirs from the
//! `aidl_interface` module in Android.bp instead, so nothing here runs there.

fn main() {
    println!("cargo:rerun-if-changed=aidl");
    #[cfg(feature = "binder")]
    generate_aidl();
}

#[cfg(feature = "binder")]
fn generate_aidl() {
    let dir = std::path::PathBuf::from("aidl/vendor/dmabufd");
    rsbinder_aidl::Builder::new()
        .source(dir)
        .output(std::path::PathBuf::from("dmabufd_aidl.rs"))
        .generate()
        .unwrap_or_else(|err| {
            eprintln!("AIDL code generation failed: {err:?}");
            std::process::exit(1);
        });
}
