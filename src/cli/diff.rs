//! `dmabufctl diff`: two snapshot files compared.

use std::io::Write;
use std::path::Path;

use super::{DiffArgs, DiffFormat};
use crate::snapshot::{self, Snapshot};
use crate::{diff, units, Error, Result};

pub fn diff(args: &DiffArgs) -> Result<()> {
    let threshold = units::parse_size(&args.threshold)?;
    let before = read(&args.before)?;
    let after = read(&args.after)?;
    let d = diff::diff(&before, &after, threshold);
    let text = match args.format {
        DiffFormat::Table => diff::table(&d, args.bytes),
        DiffFormat::Json => diff::json(&d)?,
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(|e| Error::io("writing the diff", e))
}

/// The snapshot `spec` names: a file, or `FILE@N` for the Nth snapshot in it. A file whose
/// name really ends in `@N` is taken whole.
fn read(spec: &str) -> Result<Snapshot> {
    let (path, which) = match spec.rsplit_once('@') {
        Some((path, n)) if !Path::new(spec).exists() => {
            let n = n.parse::<i64>().map_err(|_| {
                Error::InvalidArgument(format!("{spec}: expected FILE or FILE@N (N a number)"))
            })?;
            (path, Some(n))
        }
        _ => (spec, None),
    };
    let bytes = std::fs::read(path).map_err(|e| Error::io(format!("reading {path}"), e))?;
    let in_spec = |e: Error| match e {
        Error::InvalidArgument(why) => Error::InvalidArgument(format!("{spec}: {why}")),
        e => e,
    };
    snapshot::pick(&bytes, which).and_then(Snapshot::parse).map_err(in_spec)
}
