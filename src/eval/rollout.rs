//! Rollout hashing. (placeholder: being written)
/// murmur3 x86_32 over the concatenation of `parts`.
pub fn murmur3_x86_32(parts: &[&[u8]], seed: u32) -> u32 { let _ = (parts, seed); 0 }
