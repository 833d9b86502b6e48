//! The `flagbelt` command line. (placeholder)
