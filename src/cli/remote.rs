//! `dmabufctl --service ...`: the same subcommands, answered by the dmabufd service.

use std::path::Path;

use super::Command;

pub fn run(_rpc: Option<&Path>, _command: Command) -> crate::Result<()> {
    Err(crate::Error::Unsupported("TODO service client"))
}
