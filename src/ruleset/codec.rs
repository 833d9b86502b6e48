//! Codec. (placeholder)
