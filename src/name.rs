//! TODO(name)
