//! Generates the rsbinder stubs for `aidl/` and for AOSP's frozen memtrack V1
//! (`aidl_api/android.hardware.memtrack/1`) on Cargo builds. Soong builds get theirs from the
//! `aidl_interface` module in Android.bp and AOSP's `android.hardware.memtrack-V1-rust` instead,
//! so nothing here runs there.

fn main() {
    println!("cargo:rerun-if-changed=aidl");
    println!("cargo:rerun-if-changed=aidl_api/android.hardware.memtrack/1");
    #[cfg(feature = "binder")]
    {
        generate_aidl("aidl/vendor/dmabufd", "dmabufd_aidl.rs");
        generate_aidl(
            "aidl_api/android.hardware.memtrack/1/android/hardware/memtrack",
            "memtrack_aidl.rs",
        );
    }
}

#[cfg(feature = "binder")]
fn generate_aidl(dir: &str, output: &str) {
    rsbinder_aidl::Builder::new()
        .source(std::path::PathBuf::from(dir))
        .output(std::path::PathBuf::from(output))
        .generate()
        .unwrap_or_else(|err| {
            eprintln!("AIDL code generation failed: {err:?}");
            std::process::exit(1);
        });
}
