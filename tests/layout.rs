//! `dmabufctl` is linked with the dump's code laid out together (`src/bin/dmabufctl-layout.ld`,
//! made by scripts/hot-text; docs/bpf.md): the functions a pinned dump runs lie in the section
//! the script adds. A function renamed, moved or added on the dump's path falls out of it, and
//! the dump's peak RSS grows back: this fails until the script is run again.

use object::{Object, ObjectSection, ObjectSymbol};

/// Functions every pinned dump runs, by the path in their (legacy) mangled names: the functions
/// themselves, not closures in them, which an unoptimized build (this test's) keeps apart.
const DUMP_PATH: [&str; 4] = [
    "7dmabufd3cli4dump4dump",
    "7dmabufd3bpf5tally7Counter3add",
    "7dmabufd7account6Report10from_model",
    "7dmabufd6report11write_table",
];

#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn the_dump_path_is_laid_out_together() {
    let bytes = std::fs::read(env!("CARGO_BIN_EXE_dmabufctl")).expect("the dmabufctl binary");
    let elf = object::File::parse(&*bytes).expect("an ELF file");
    let hot = elf.section_by_name(".text.hot").expect("a .text.hot section");
    let inside = hot.address()..hot.address() + hot.size();
    for path in DUMP_PATH {
        let hashed = format!("{path}17h");
        let placed: Vec<bool> = elf
            .symbols()
            .filter(|s| s.name().is_ok_and(|n| n.contains(&hashed)))
            .map(|s| inside.contains(&s.address()))
            .collect();
        assert!(!placed.is_empty(), "no symbol {path} (renamed? run scripts/hot-text)");
        assert!(placed.iter().all(|&p| p), "{path} is outside .text.hot: run scripts/hot-text");
    }
}
