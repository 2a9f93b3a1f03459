//! Placeholder: typed settings are being written by the lead.
