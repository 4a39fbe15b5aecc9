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
    lay_out_dmabufctl();
}

/// Links `dmabufctl` with `src/bin/dmabufctl-layout.ld` (made by scripts/hot-text): the code a
/// dump runs, in one section at the start of the text. The kernel maps a program's code 64 KiB
/// around each page it touches (fault-around), and a dump's code, spread over the whole text,
/// made most of the binary resident: the layout takes 860 KB off a dump's peak RSS
/// (BENCHMARKS.md, session 8). The script only adds a section before `.text` (`INSERT`), and a
/// name it lists that a build lacks places nothing, so any build links with it; glibc targets
/// only, as it names glibc's objects. `DMABUFCTL_LAYOUT` names another script instead:
/// scripts/hot-text links with one that puts every function on pages of its own, to see which
/// ran.
fn lay_out_dmabufctl() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let layout = std::env::var("DMABUFCTL_LAYOUT")
        .unwrap_or_else(|_| format!("{dir}/src/bin/dmabufctl-layout.ld"));
    println!("cargo:rerun-if-env-changed=DMABUFCTL_LAYOUT");
    println!("cargo:rerun-if-changed={layout}");
    let target = |key: &str| std::env::var(key).unwrap_or_default();
    if target("CARGO_CFG_TARGET_OS") == "linux" && target("CARGO_CFG_TARGET_ENV") == "gnu" {
        println!("cargo:rustc-link-arg-bin=dmabufctl=-Wl,-T,{layout}");
    }
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
