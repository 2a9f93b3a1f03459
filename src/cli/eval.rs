//! Placeholder: written on the retrieval branch.
