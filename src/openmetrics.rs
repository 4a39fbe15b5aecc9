//! The OpenMetrics text exposition of an [`account::Report`](crate::account::Report): what
//! `dmabufctl dump -o openmetrics` prints and `dmabufctl serve --metrics` answers, for Prometheus
//! and anything else that reads the format (OpenMetrics 1.0, which Prometheus' text format 0.0.4
//! parsers also accept). The families are listed in docs/dump.md.
//!
//! Label values are names, command names and heaps, bytes that any process can choose. A label
//! value must be UTF-8, and a dashboard is a text output like any other, so each one is first
//! given the project's one [escaped form](crate::text::escape) (lossless, no control characters:
//! two different names never become one series) and that is then written with the exposition
//! format's own escapes (`\\`, `\"`, `\n`). A newline in a name thus reaches Prometheus as the
//! two characters `\n`, exactly as tables show it.

use std::fmt::Write;

use crate::account::{ProcessView, Report};
use crate::text::escape;

/// The HTTP `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Renders every view of `report` as one OpenMetrics exposition, ending with `# EOF`.
pub fn render(report: &Report) -> String {
    let mut out = Exposition::default();

    out.family(
        "dmabuf_process_rss_bytes",
        "Bytes of distinct dma-bufs a process holds by fd or mapping.",
        true,
    );
    for p in &report.processes {
        out.process_sample(p, p.rss);
    }
    out.family(
        "dmabuf_process_pss_bytes",
        "A process's proportional share of the dma-bufs it references.",
        true,
    );
    for p in &report.processes {
        out.process_sample(p, p.pss);
    }

    out.family(
        "dmabuf_uid_rss_bytes",
        "Bytes of distinct dma-bufs referenced by any process of a uid.",
        true,
    );
    for a in &report.apps {
        out.sample(&[("uid", a.uid.to_string().as_bytes())], a.rss);
    }
    out.family(
        "dmabuf_uid_pss_bytes",
        "Sum of the proportional shares of a uid's processes.",
        true,
    );
    for a in &report.apps {
        out.sample(&[("uid", a.uid.to_string().as_bytes())], a.pss);
    }

    out.family(
        "dmabuf_name_bytes",
        "Bytes of the dma-bufs with one purpose name (empty for unnamed ones).",
        true,
    );
    for n in &report.names {
        out.sample(&[("name", n.name.as_bytes())], n.bytes);
    }
    out.family("dmabuf_name_buffers", "Number of dma-bufs with one purpose name.", false);
    for n in &report.names {
        out.sample(&[("name", n.name.as_bytes())], u64::from(n.buffers));
    }

    out.family(
        "dmabuf_heap_bytes",
        "Bytes of the dma-bufs of one exporter (heap; empty when the kernel did not tell).",
        true,
    );
    for h in &report.heaps {
        out.sample(&[("heap", h.exporter.as_bytes())], h.bytes);
    }
    out.family("dmabuf_heap_buffers", "Number of dma-bufs of one exporter (heap).", false);
    for h in &report.heaps {
        out.sample(&[("heap", h.exporter.as_bytes())], u64::from(h.buffers));
    }

    let totals = &report.totals;
    if let Some(exported) = totals.exported_bytes {
        out.family(
            "dmabuf_exported_bytes",
            "Bytes of every exported dma-buf, per the kernel's buffer list.",
            true,
        );
        out.sample(&[], exported);
    }
    out.family(
        "dmabuf_userspace_bytes",
        "Bytes of distinct dma-bufs referenced by the reported processes.",
        true,
    );
    out.sample(&[], totals.userspace_rss);
    out.family("dmabuf_kernel_only_bytes", "Bytes of dma-bufs no process references.", true);
    out.sample(&[], totals.kernel_only_bytes);
    out.family(
        "dmabuf_unreadable_processes",
        "Processes the scan skipped (exited, or not readable by the scanner).",
        false,
    );
    out.sample(&[], u64::from(totals.unreadable_processes));

    out.text.push_str("# EOF\n");
    out.text
}

/// The text being built, and the family its samples belong to.
#[derive(Default)]
struct Exposition {
    text: String,
    family: &'static str,
}

impl Exposition {
    /// Starts a gauge family; `bytes` adds its unit (the name then ends in `_bytes`).
    fn family(&mut self, name: &'static str, help: &str, bytes: bool) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.text, "# TYPE {name} gauge");
        if bytes {
            let _ = writeln!(self.text, "# UNIT {name} bytes");
        }
        // HELP texts are constants without `\`, `"` or newlines (a test checks), which both
        // formats would need escaped.
        let _ = writeln!(self.text, "# HELP {name} {help}");
        self.family = name;
    }

    /// One sample of the current family for process `p`.
    fn process_sample(&mut self, p: &ProcessView, value: u64) {
        let (pid, uid) = (p.pid.to_string(), p.uid.to_string());
        let labels: [(&str, &[u8]); 3] =
            [("pid", pid.as_bytes()), ("uid", uid.as_bytes()), ("comm", p.comm.as_bytes())];
        self.sample(&labels, value);
    }

    /// One sample of the current family.
    fn sample(&mut self, labels: &[(&str, &[u8])], value: u64) {
        self.text.push_str(self.family);
        for (i, (label, bytes)) in labels.iter().enumerate() {
            self.text.push(if i == 0 { '{' } else { ',' });
            self.text.push_str(label);
            self.text.push_str("=\"");
            label_value(&mut self.text, bytes);
            self.text.push('"');
        }
        if !labels.is_empty() {
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }
}

/// Appends `bytes` as a label value: the escaped form, then the format's escapes.
fn label_value(out: &mut String, bytes: &[u8]) {
    for c in escape(bytes).chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::{Buffer, Filter, Model, Name, PidCounts, Process};

    fn model(names: &[&[u8]]) -> Model {
        let mut m = Model::default();
        m.processes.insert(7, Process { pid: 7, uid: 10001, comm: "cam\"era\n".into() });
        for (i, name) in names.iter().enumerate() {
            let inode = 100 + i as u64;
            m.buffers.insert(
                inode,
                Buffer {
                    inode,
                    size: 4096 * (i as u64 + 1),
                    exporter: Some("system".into()),
                    name: Some(Name::from(*name)),
                    fd_refs: PidCounts::from([(7, 1)]),
                    ..Buffer::default()
                },
            );
        }
        m.buffers
            .insert(900, Buffer { inode: 900, size: 8192, exporter: None, ..Buffer::default() });
        m.exported_bytes = Some(4096 + 8192 + 8192);
        m
    }

    fn sample_lines(text: &str, family: &str) -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(family) && l[family.len()..].starts_with(['{', ' ']))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn every_view_with_exact_bytes() {
        let report = Report::build(&model(&[b"GL:a"]), &Filter::default());
        let text = render(&report);
        assert_eq!(
            sample_lines(&text, "dmabuf_process_rss_bytes"),
            [r#"dmabuf_process_rss_bytes{pid="7",uid="10001",comm="cam\"era\\n"} 4096"#]
        );
        assert_eq!(
            sample_lines(&text, "dmabuf_uid_pss_bytes"),
            [r#"dmabuf_uid_pss_bytes{uid="10001"} 4096"#]
        );
        assert_eq!(
            sample_lines(&text, "dmabuf_name_bytes"),
            [r#"dmabuf_name_bytes{name=""} 8192"#, r#"dmabuf_name_bytes{name="GL:a"} 4096"#]
        );
        assert_eq!(
            sample_lines(&text, "dmabuf_heap_buffers"),
            [r#"dmabuf_heap_buffers{heap=""} 1"#, r#"dmabuf_heap_buffers{heap="system"} 1"#]
        );
        assert_eq!(sample_lines(&text, "dmabuf_exported_bytes"), ["dmabuf_exported_bytes 20480"]);
        assert_eq!(
            sample_lines(&text, "dmabuf_kernel_only_bytes"),
            ["dmabuf_kernel_only_bytes 8192"]
        );
        assert!(text.ends_with("\n# EOF\n"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1);
    }

    #[test]
    fn every_family_has_type_help_and_unit_before_its_samples() {
        let text = render(&Report::build(&model(&[b"x"]), &Filter::default()));
        let mut seen = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let family = line.split(['{', ' ']).next().unwrap();
            if !seen.contains(&family) {
                seen.push(family);
                let at = text.find(&format!("\n{line}\n")).unwrap();
                let head = &text[..at];
                assert!(head.contains(&format!("# TYPE {family} gauge\n")), "{family}");
                assert!(head.contains(&format!("# HELP {family} ")), "{family}");
                assert_eq!(
                    head.contains(&format!("# UNIT {family} bytes\n")),
                    family.ends_with("_bytes"),
                    "{family}"
                );
            }
        }
        assert_eq!(seen.len(), 12);
        for help in text.lines().filter_map(|l| l.strip_prefix("# HELP ")) {
            assert!(!help.contains(['\\', '"']), "{help}");
        }
    }

    #[test]
    fn hostile_names_are_one_label_value_each() {
        let names: [&[u8]; 6] =
            [b"a\"b", b"back\\slash", b"new\nline", b"bad\xffutf8", b"new\\nline", b"\x1b[2J"];
        let text = render(&Report::build(&model(&names), &Filter::default()));
        let lines = sample_lines(&text, "dmabuf_name_buffers");
        assert_eq!(
            lines,
            [
                r#"dmabuf_name_buffers{name=""} 1"#,
                r#"dmabuf_name_buffers{name="\\x1b[2J"} 1"#,
                r#"dmabuf_name_buffers{name="a\"b"} 1"#,
                r#"dmabuf_name_buffers{name="back\\\\slash"} 1"#,
                r#"dmabuf_name_buffers{name="bad\\xffutf8"} 1"#,
                r#"dmabuf_name_buffers{name="new\\nline"} 1"#,
                r#"dmabuf_name_buffers{name="new\\\\nline"} 1"#,
            ]
        );
        // No control character or raw newline inside a sample line.
        assert!(text.lines().all(|l| !l.chars().any(char::is_control)));
    }

    #[test]
    fn label_values_unescape_to_the_escaped_form() {
        // What a parser gets back after undoing the format's escapes is text::escape's output.
        let raw: &[u8] = b"q\"\\\n\xfe";
        let mut out = String::new();
        label_value(&mut out, raw);
        let (mut back, mut chars) = (String::new(), out.chars());
        while let Some(c) = chars.next() {
            back.push(match (c, c == '\\') {
                (_, true) => match chars.next() {
                    Some('n') => '\n',
                    Some(c) => c,
                    None => panic!("dangling escape in {out}"),
                },
                (c, false) => c,
            });
        }
        assert_eq!(back, escape(raw));
    }

    #[test]
    fn empty_report_is_still_a_valid_exposition() {
        let text = render(&Report::build(&Model::default(), &Filter::default()));
        assert!(text.contains("dmabuf_userspace_bytes 0\n"));
        assert!(!text.contains("dmabuf_exported_bytes"));
        assert!(text.ends_with("# EOF\n"));
    }
}
