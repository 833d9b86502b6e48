//! Last-known-good persistence. (being written)
