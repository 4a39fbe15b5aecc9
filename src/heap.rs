//! TODO(heap)
