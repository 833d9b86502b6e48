//! Manifests. (placeholder)
