//! A port of libdmabufinfo's `ReadDmaBufFdRefs` + `ReadDmaBufMapRefs` as AOSP dmabuf_dump
//! runs them, for systems without the real binary: for every fd of every process, open and
//! read `fdinfo` line by line and keep it if it has `exp_name:`; find the buffer by a linear
//! search of a vector; then read `maps` line by line, parse every line, keep `/dmabuf` paths,
//! and search again. One thread.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};

struct DmaBuffer {
    inode: u64,
    #[allow(dead_code)] // Kept, as dmabuf_dump keeps them, to do the same work.
    meta: (u64, u64, String, String),
    fdrefs: HashMap<i32, u32>,
    maprefs: HashMap<i32, u32>,
}

/// Returns (fd refs, map refs, buffers) summed over all buffers.
pub fn scan() -> (u64, u64, u64) {
    let mut bufs: Vec<DmaBuffer> = Vec::new();
    for dent in std::fs::read_dir("/proc").expect("/proc").filter_map(|e| e.ok()) {
        let Some(pid) = dent.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        read_fd_refs(pid, &mut bufs);
        read_map_refs(pid, &mut bufs);
    }
    let fds = bufs.iter().flat_map(|b| b.fdrefs.values()).map(|&n| u64::from(n)).sum();
    let maps = bufs.iter().flat_map(|b| b.maprefs.values()).map(|&n| u64::from(n)).sum();
    (fds, maps, bufs.len() as u64)
}

fn read_fd_refs(pid: i32, bufs: &mut Vec<DmaBuffer>) {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return;
    };
    for dent in dir.filter_map(|e| e.ok()) {
        let Some(fd) = dent.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(file) = File::open(format!("/proc/{pid}/fdinfo/{fd}")) else {
            continue;
        };
        let (mut name, mut exporter) = ("<unknown>".to_string(), "<unknown>".to_string());
        let (mut count, mut size, mut inode) = (0u64, 0u64, None);
        let mut is_dmabuf = false;
        for line in BufReader::new(file).lines().map_while(Result::ok) {
            let value = |prefix: &str| line.strip_prefix(prefix).map(|v| v.trim().to_string());
            if let Some(v) = value("count:") {
                count = v.parse().unwrap_or(0);
            } else if let Some(v) = value("exp_name:") {
                exporter = v;
                is_dmabuf = true;
            } else if let Some(v) = value("name:") {
                name = v;
            } else if let Some(v) = value("size:") {
                size = v.parse().unwrap_or(0);
            } else if let Some(v) = value("ino:") {
                inode = v.parse().ok();
            }
        }
        if !is_dmabuf {
            continue;
        }
        let inode = match inode {
            Some(i) => i,
            None => match std::fs::metadata(format!("/proc/{pid}/fd/{fd}")) {
                Ok(m) => std::os::unix::fs::MetadataExt::ino(&m),
                Err(_) => continue,
            },
        };
        match bufs.iter_mut().find(|b| b.inode == inode) {
            Some(b) => *b.fdrefs.entry(pid).or_default() += 1,
            None => bufs.push(DmaBuffer {
                inode,
                meta: (size, count, exporter, name),
                fdrefs: HashMap::from([(pid, 1)]),
                maprefs: HashMap::new(),
            }),
        }
    }
}

/// libprocinfo parses every maps line into a struct with an owned name, then the callback
/// filters on the `/dmabuf` prefix.
fn read_map_refs(pid: i32, bufs: &mut Vec<DmaBuffer>) {
    let Ok(file) = File::open(format!("/proc/{pid}/maps")) else {
        return;
    };
    for line in BufReader::new(file).lines().map_while(Result::ok) {
        let mut fields = line.splitn(6, ' ');
        let range = fields.next().unwrap_or("");
        let _perms = fields.next();
        let _offset = fields.next().and_then(|o| u64::from_str_radix(o, 16).ok());
        let _dev = fields.next();
        let inode: u64 = fields.next().and_then(|i| i.parse().ok()).unwrap_or(0);
        let name = fields.next().unwrap_or("").trim_start().to_string();
        let (start, end) = range.split_once('-').map_or((0, 0), |(s, e)| {
            (u64::from_str_radix(s, 16).unwrap_or(0), u64::from_str_radix(e, 16).unwrap_or(0))
        });
        if !name.starts_with("/dmabuf") {
            continue;
        }
        match bufs.iter_mut().find(|b| b.inode == inode) {
            Some(b) => *b.maprefs.entry(pid).or_default() += 1,
            None => bufs.push(DmaBuffer {
                inode,
                meta: (end - start, 0, "<unknown>".into(), name),
                fdrefs: HashMap::new(),
                maprefs: HashMap::from([(pid, 1)]),
            }),
        }
    }
}
