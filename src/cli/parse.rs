//! The command line, parsed with only the named subcommand's arguments built.
//!
//! clap's derive builds every subcommand's arguments before it parses: straight-line code run
//! once, which is what an emulated CPU is slowest at (TCG translates each instruction before it
//! runs it). For `dmabufctl dump` that was most of its start-up in the VM (BENCHMARKS.md), so
//! the parser gets the global options and the one subcommand the line names; `--help`,
//! `--version`, no subcommand or an unknown one take the whole tree, so every message is the
//! same as before. The test below holds the shortcut to the tree.

use std::ffi::OsString;

use clap::{Args, Command, FromArgMatches, Parser, Subcommand};

use super::{
    AllocArgs, BpfCommand, Cli, DiffArgs, DumpArgs, GlobalArgs, HistoryArgs, LedgerArgs, ServeArgs,
    TopArgs,
};

/// Parses `args` (program name first).
pub(super) fn cli(args: Vec<OsString>) -> Result<Cli, clap::Error> {
    let Some(sub) = named_subcommand(&args).and_then(subcommand) else {
        return Cli::try_parse_from(args);
    };
    let command = GlobalArgs::augment_args(Command::new("dmabufctl")).subcommand(sub);
    Cli::from_arg_matches(&command.try_get_matches_from(args)?)
}

/// The subcommand `args` names, unless it asks for help (which lists the whole tree).
fn named_subcommand(args: &[OsString]) -> Option<&str> {
    let mut words = args.iter().skip(1).map(|a| a.to_str());
    let mut name = None;
    while let Some(word) = words.next() {
        match word? {
            "-h" | "--help" | "help" | "-V" | "--version" => return None,
            "--rpc" => {
                words.next();
            }
            w if w.starts_with('-') => {}
            w if name.is_none() => name = Some(w),
            _ => {}
        }
    }
    name
}

/// The parser of one subcommand, as the derived tree has it (without its `--help` summary).
fn subcommand(name: &str) -> Option<Command> {
    Some(match name {
        "heaps" => Command::new("heaps"),
        "alloc" => AllocArgs::augment_args(Command::new("alloc")),
        "dump" => DumpArgs::augment_args(Command::new("dump")),
        "ledger" => LedgerArgs::augment_args(Command::new("ledger")),
        "holders" => LedgerArgs::augment_args(Command::new("holders")),
        "diff" => DiffArgs::augment_args(Command::new("diff")),
        "top" => TopArgs::augment_args(Command::new("top")),
        "serve" => ServeArgs::augment_args(Command::new("serve")),
        "history" => HistoryArgs::augment_args(Command::new("history")),
        "bpf" => BpfCommand::augment_subcommands(Command::new("bpf"))
            .subcommand_required(true)
            .arg_required_else_help(true),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn args(line: &str) -> Vec<OsString> {
        std::iter::once("dmabufctl").chain(line.split_whitespace()).map(Into::into).collect()
    }

    /// Every subcommand of the derived tree has a shortcut with the same arguments.
    #[test]
    fn each_shortcut_is_the_trees_subcommand() {
        let tree = Cli::command();
        for sub in tree.get_subcommands() {
            let name = sub.get_name();
            let short = subcommand(name).unwrap_or_else(|| panic!("no shortcut for {name}"));
            let ids =
                |c: &Command| c.get_arguments().map(|a| a.get_id().clone()).collect::<Vec<_>>();
            assert_eq!(ids(&short), ids(sub), "{name}");
            let subs = |c: &Command| {
                c.get_subcommands().map(|s| s.get_name().to_string()).collect::<Vec<_>>()
            };
            assert_eq!(subs(&short), subs(sub), "{name}");
        }
    }

    /// Both parsers read the same lines alike, globals before or after the subcommand.
    #[test]
    fn shortcut_parses_as_the_tree_does() {
        for line in [
            "dump",
            "dump -b --source procfs 42",
            "--service --rpc /tmp/s dump --by name",
            "dump --service -o json --uid 1000",
            "alloc --heap system --size 4K --name x --count 2",
            "bpf pin",
            "heaps",
            "top -b -n 2",
        ] {
            let short = format!("{:?}", cli(args(line)).expect(line));
            let tree = format!("{:?}", Cli::try_parse_from(args(line)).expect(line));
            assert_eq!(short, tree, "{line}");
        }
        for bad in ["dump --source nope", "alloc --heap system", "bpf", "dump --rpc x"] {
            let short = cli(args(bad)).expect_err(bad);
            let tree = Cli::try_parse_from(args(bad)).expect_err(bad);
            assert_eq!(short.kind(), tree.kind(), "{bad}");
        }
    }

    #[test]
    fn help_version_and_unknown_names_take_the_tree() {
        for line in ["--help", "dump --help", "-V", "help dump", "", "--rpc dump", "nosuch"] {
            assert!(
                named_subcommand(&args(line)).and_then(subcommand).is_none() || line.is_empty(),
                "{line}"
            );
        }
        assert_eq!(named_subcommand(&args("--rpc /s dump")), Some("dump"));
    }
}
