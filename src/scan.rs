//! TODO(scan)
