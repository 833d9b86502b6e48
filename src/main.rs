//! The `flagbelt` binary: only wires the command line to `flagbelt::cli`.

// mimalloc: a server holding thousands of environments makes many small
// allocations; it uses less memory and swaps large rulesets in faster than
// glibc malloc (benches/delivery.rs; README "Benchmarks").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    no_transparent_huge_pages();
    flagbelt::cli::main()
}

/// Opts the process out of transparent huge pages. mimalloc commits its arenas
/// eagerly, and where the kernel backs them with huge pages a half-used arena
/// counts in full in the resident size (the README's "Server load test", under
/// "Benchmarks", has the figures). Failing (a kernel without the flag) changes
/// nothing else, so it is ignored.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_thp_disable(true);
}
