//! TODO(ledger)
