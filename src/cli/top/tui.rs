//! `top`'s full-screen view: ratatui over crossterm (alternate screen, raw mode), redrawn at
//! each refresh and key; keys as in top/htop.

use std::io::IsTerminal;
use std::time::Instant;

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Alignment, Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::Frame as Screen;

use super::{kind, Frames, TopArgs};
use crate::snapshot::Kind;
use crate::top::{Frame, Session};
use crate::{Error, Result};

const KEYS: &str = "p process  a app  n name  h heap  s sort  space refresh  q quit";

/// A terminal that can take a full-screen view: stdout is one, and TERM says it can move the
/// cursor (`dumb` terminals, and no TERM at all, get plain frames).
pub(super) fn usable() -> bool {
    let term = std::env::var_os("TERM").unwrap_or_default();
    std::io::stdout().is_terminal() && !term.is_empty() && term != "dumb"
}

/// Puts the terminal back however `run` ends.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

pub(super) fn run(args: &TopArgs, mut session: Session, mut frames: Frames<'_>) -> Result<()> {
    let tty = |e| Error::io("driving the terminal", e);
    let mut terminal = ratatui::try_init().map_err(tty)?;
    let _restore = Restore;
    let (mut by, mut sort) = (kind(args.by), args.sort);
    let mut due = Instant::now() + args.delay;
    let mut shown = 1u64;
    loop {
        let frame = session.frame(by, sort);
        terminal.draw(|screen| draw(screen, &frame, args.bytes)).map_err(tty)?;
        let mut refresh = false;
        if event::poll(due.saturating_duration_since(Instant::now())).map_err(tty)? {
            if let Event::Key(key) = event::read().map_err(tty)? {
                if key.kind != KeyEventKind::Press {
                    continue;
                }
                match key.code {
                    KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                    KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                        return Ok(())
                    }
                    KeyCode::Char('p') => by = Kind::Process,
                    KeyCode::Char('a') => by = Kind::App,
                    KeyCode::Char('n') => by = Kind::Name,
                    KeyCode::Char('h') => by = Kind::Heap,
                    KeyCode::Char('s') => sort = sort.next(),
                    KeyCode::Char(' ') => refresh = true,
                    _ => {}
                }
            }
        } else {
            refresh = true;
        }
        if refresh {
            if args.frames.is_some_and(|limit| shown >= limit) {
                return Ok(());
            }
            // A replay that has run out keeps showing its last frame.
            if let Some(next) = (frames.next)()? {
                session.advance(next);
                shown += 1;
            }
            due = Instant::now() + args.delay;
        }
    }
}

fn draw(screen: &mut Screen<'_>, frame: &Frame, bytes: bool) {
    let [head, body, foot] =
        Layout::vertical([Constraint::Length(3), Constraint::Min(1), Constraint::Length(1)])
            .areas(screen.area());
    let [when, total] = frame.header(bytes);
    screen.render_widget(Paragraph::new(vec![Line::from(when), Line::from(total)]), head);
    let cells = frame.cells(bytes);
    let headings = frame.headings();
    let widths: Vec<Constraint> = (0..headings.len())
        .map(|i| {
            let widest = cells.iter().map(|row| row[i].chars().count()).max().unwrap_or(0);
            Constraint::Length(widest.max(headings[i].len()) as u16)
        })
        .collect();
    let aligned = |i: usize, text: String| {
        let line = Line::from(text);
        Cell::from(if i == 0 { line } else { line.alignment(Alignment::Right) })
    };
    let header = Row::new(headings.iter().enumerate().map(|(i, h)| aligned(i, (*h).into())))
        .style(Style::new().add_modifier(Modifier::REVERSED));
    let rows = cells
        .into_iter()
        .map(|row| Row::new(row.into_iter().enumerate().map(|(i, c)| aligned(i, c))));
    screen.render_widget(Table::new(rows, widths).header(header).column_spacing(2), body);
    screen.render_widget(
        Paragraph::new(KEYS).style(Style::new().add_modifier(Modifier::REVERSED)),
        foot,
    );
}
