//! Generates the rsbinder stubs for `aidl/` and for AOSP's frozen memtrack V1
//! (`aidl_api/android.hardware.memtrack/1`) on Cargo builds. Soong builds get theirs from the
//! `aidl_interface` module in Android.bp and AOSP's `android.hardware.memtrack-V1-rust` instead,
//! so nothing here runs there. With feature `bpf`, also compiles the BPF iterators (bpf/) into
//! one CO-RE object that the library embeds.

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
    #[cfg(feature = "bpf")]
    compile_bpf();
}

/// clang (or `$CLANG`) -target bpf: the object is relocated against the running kernel's BTF at
/// load, so one build serves every kernel (docs/bpf.md).
#[cfg(feature = "bpf")]
fn compile_bpf() {
    let src = "bpf/dmabuf_iter.bpf.c";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-env-changed=CLANG");
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("dmabuf_iter.bpf.o");
    let clang = std::env::var_os("CLANG").unwrap_or_else(|| "clang".into());
    let status = std::process::Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror", "-c", src, "-o"])
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => {
            eprintln!("{} failed on {src}: {s}", clang.to_string_lossy());
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!(
                "feature `bpf` needs clang ({}: {e}); scripts/setup installs it",
                clang.to_string_lossy()
            );
            std::process::exit(1);
        }
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
