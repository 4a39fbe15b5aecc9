//! TODO(account)
