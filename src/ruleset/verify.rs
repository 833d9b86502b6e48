//! Verification. (placeholder)
