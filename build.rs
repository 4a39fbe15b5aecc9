//! Generates the rsbinder stubs for `aidl/` on Cargo builds. Soong builds get theirs from the
//! `aidl_interface` module in Android.bp instead, so nothing here runs there. With feature
//! `bpf`, also compiles the BPF iterators (bpf/) into one CO-RE object that the library embeds.

fn main() {
    println!("cargo:rerun-if-changed=aidl");
    #[cfg(feature = "binder")]
    generate_aidl();
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
