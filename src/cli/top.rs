//! `dmabufctl top`: the frames of [`crate::top`] refreshed at an interval, full-screen with keys
//! (feature `tui`, on a real terminal) or as plain text one after another (`--batch`, pipes,
//! `TERM=dumb`, and builds without the feature such as Soong's).

#[cfg(feature = "tui")]
mod tui;

use std::io::Write;
use std::time::{Duration, Instant};

use super::{GroupBy, TopArgs};
use crate::account::Report;
use crate::snapshot::{self, Groups, Kind, Meta, Snapshot};
use crate::top::Session;
use crate::{Error, Result};

/// Where frames come from: scans (`live`) or the lines of a `--replay` file.
struct Frames<'a> {
    next: Box<dyn FnMut() -> Result<Option<Snapshot>> + 'a>,
    /// Whether to wait for the interval between frames (a replay's batch output does not).
    live: bool,
}

/// Runs `top` over the reports `scan` makes (each with the name of where it came from), or
/// over `--replay`.
pub(super) fn top(
    args: &TopArgs,
    mut scan: impl FnMut() -> Result<(Report, &'static str)>,
) -> Result<()> {
    let mut frames = match &args.replay {
        Some(path) => {
            let bytes = std::fs::read(path)
                .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            let mut snapshots = snapshot::all(&bytes)
                .map_err(|e| match e {
                    Error::InvalidArgument(why) => {
                        Error::InvalidArgument(format!("{}: {why}", path.display()))
                    }
                    e => e,
                })?
                .into_iter();
            Frames { next: Box::new(move || Ok(snapshots.next())), live: false }
        }
        None => Frames {
            next: Box::new(move || {
                let (report, source) = scan()?;
                let groups = Groups::from_report(&report);
                Ok(Some(Snapshot { meta: Meta::now(source), groups }))
            }),
            live: true,
        },
    };
    let Some(first) = (frames.next)()? else {
        return Err(Error::InvalidArgument("the replay file holds no snapshot".into()));
    };
    let session = Session::new(first);
    #[cfg(feature = "tui")]
    if !args.batch && tui::usable() {
        return tui::run(args, session, frames);
    }
    plain(args, session, frames)
}

/// The grouping `--by` names.
fn kind(by: GroupBy) -> Kind {
    match by {
        GroupBy::Process => Kind::Process,
        GroupBy::App => Kind::App,
        GroupBy::Name => Kind::Name,
        GroupBy::Heap => Kind::Heap,
    }
}

/// Plain frames, each followed by a blank line, until `-n` frames or the replay's end.
fn plain(args: &TopArgs, mut session: Session, mut frames: Frames<'_>) -> Result<()> {
    let start = Instant::now();
    let mut stdout = std::io::stdout().lock();
    for n in 1u32.. {
        let text = session.frame(kind(args.by), args.sort).text(args.bytes) + "\n";
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(|e| Error::io("writing a frame", e))?;
        if args.frames.is_some_and(|limit| u64::from(n) >= limit) {
            break;
        }
        if frames.live {
            // Frames keep to the interval from the first one, however long each scan took.
            std::thread::sleep((start + args.delay * n).saturating_duration_since(Instant::now()));
        }
        match (frames.next)()? {
            Some(next) => session.advance(next),
            None => break,
        }
    }
    Ok(())
}

/// `-d SECONDS`: a positive number of seconds, fractions allowed (as top's `-d`).
pub(super) fn parse_delay(text: &str) -> std::result::Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 => Duration::try_from_secs_f64(s).map_err(|e| e.to_string()),
        _ => Err(format!("{text:?} is not a positive number of seconds")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_positive_seconds() {
        assert_eq!(parse_delay("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_delay("0.5"), Ok(Duration::from_millis(500)));
        for bad in ["0", "-1", "x", "", "NaN", "inf"] {
            assert!(parse_delay(bad).is_err(), "{bad}");
        }
    }
}
