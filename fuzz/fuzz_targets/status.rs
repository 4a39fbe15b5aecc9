//! `/proc/<pid>/status`: `procfs::status::parse`.
//!
//! Asserts: bounded command name, and a round trip: `Name:` and `Uid:` lines printed the way the
//! kernel prints them parse to the same identity.
#![no_main]

use dmabufd::procfs::status;
use dmabufd_fuzz::assert_bounded;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(st) = status::parse(data) {
        assert_bounded(&st.comm, data);
        assert!(!st.comm.contains('\n'));
        let printed = format!(
            "Name:\t{}\nUmask:\t0077\nState:\tS (sleeping)\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n",
            st.comm,
            uid = st.uid
        );
        assert_eq!(status::parse(printed.as_bytes()), Some(st));
    }
});
