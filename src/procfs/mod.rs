//! TODO(procfs)
