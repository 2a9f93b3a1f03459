//! Placeholder: this module is being written on a helper branch.
