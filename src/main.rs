//! flagbelt command line.
fn main() {}
