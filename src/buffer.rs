//! TODO(buffer)
