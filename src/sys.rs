//! TODO(sys)
