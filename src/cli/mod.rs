//! Placeholder: the command line is being written by the lead.
pub mod corpus;
pub mod eval;
