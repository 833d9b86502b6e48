//! The stored layout, written out once: where an environment's manifest and
//! ruleset objects live, in a store and in a local folder.
//!
//! ```text
//! <prefix>/<env>/manifest.pb             small, mutable
//! <prefix>/<env>/rulesets/<version>.pb   immutable
//! ```
//!
//! Owns the names (`manifest.pb`, `rulesets/`, `<version>.pb`), the paths
//! relative to an environment folder, the joins onto a local folder, and
//! parsing a ruleset object's name back to its version. Every reader and
//! writer (sources, last-known-good, the CLI, manifest building and
//! verification) spells the layout through this module. Pure: string and
//! [`Path`] work only, no I/O.

use std::path::{Path, PathBuf};

/// File name of an environment's manifest, inside its folder.
pub const MANIFEST: &str = "manifest.pb";

/// Folder of an environment's ruleset objects, inside its folder.
pub const RULESETS: &str = "rulesets";

/// Path of the ruleset object of `version`, relative to the environment folder:
/// `rulesets/<version>.pb`.
pub fn ruleset_path(version: u64) -> String {
    format!("{RULESETS}/{}", ruleset_file_name(version))
}

/// File name of the ruleset object of `version` inside `rulesets/`:
/// `<version>.pb`.
pub fn ruleset_file_name(version: u64) -> String {
    format!("{version}.pb")
}

/// The version a file name inside `rulesets/` stands for: exactly
/// `<version>.pb` with the version in canonical decimal (no sign, no leading
/// zeros), else `None`.
pub fn parse_ruleset_file_name(name: &str) -> Option<u64> {
    name.strip_suffix(".pb")
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|&v| name == ruleset_file_name(v))
}

/// The version a path relative to the environment folder stands for: exactly
/// `rulesets/<version>.pb` (see [`parse_ruleset_file_name`]), else `None`.
pub fn parse_ruleset_path(path: &str) -> Option<u64> {
    path.strip_prefix(RULESETS)
        .and_then(|rest| rest.strip_prefix('/'))
        .and_then(parse_ruleset_file_name)
}

/// An object's key relative to a store's prefix: `<env>/<relative>`.
pub fn env_object(env: &str, relative: &str) -> String {
    format!("{env}/{relative}")
}

/// `<root>/<env>`: an environment's folder in a local copy of the layout.
pub fn env_dir(root: &Path, env: &str) -> PathBuf {
    root.join(env)
}

/// `<env_dir>/manifest.pb`.
pub fn manifest_file(env_dir: &Path) -> PathBuf {
    env_dir.join(MANIFEST)
}

/// `<env_dir>/rulesets`.
pub fn rulesets_dir(env_dir: &Path) -> PathBuf {
    env_dir.join(RULESETS)
}

/// `<env_dir>/rulesets/<version>.pb`.
pub fn ruleset_file(env_dir: &Path, version: u64) -> PathBuf {
    rulesets_dir(env_dir).join(ruleset_file_name(version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_their_versions_round_trip() {
        assert_eq!(ruleset_path(42), "rulesets/42.pb");
        assert_eq!(parse_ruleset_path("rulesets/42.pb"), Some(42));
        assert_eq!(parse_ruleset_file_name("0.pb"), Some(0));
        assert_eq!(
            parse_ruleset_file_name(&ruleset_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        for bad in ["042.pb", "+4.pb", "4.pb.tmp", "4", "x.pb", ".pb", "-1.pb"] {
            assert_eq!(parse_ruleset_file_name(bad), None, "{bad}");
        }
        assert_eq!(parse_ruleset_path("rulesets/4"), None);
        assert_eq!(parse_ruleset_path("other/4.pb"), None);
        assert_eq!(parse_ruleset_path("rulesets4.pb"), None);
        let root = Path::new("/out");
        let env = env_dir(root, "prod");
        assert_eq!(manifest_file(&env), Path::new("/out/prod/manifest.pb"));
        assert_eq!(ruleset_file(&env, 7), Path::new("/out/prod/rulesets/7.pb"));
        assert_eq!(env_object("prod", MANIFEST), "prod/manifest.pb");
    }
}
