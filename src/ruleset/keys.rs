//! API keys and signing keys. (placeholder)
