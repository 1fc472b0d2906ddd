//! Running SIPp (Debian `sip-tester`) and reading its results.

use std::path::PathBuf;

/// The path of `tool`, or `None` outside CI when it is missing (the test then says so and passes).
pub fn tool(candidates: &[&str], package: &str) -> Option<PathBuf> {
    let found = candidates.iter().find_map(|name| {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    });
    if found.is_none() {
        let message = format!("{} not found: install Debian's {package} (./scripts/test does)", candidates[0]);
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
        eprintln!("SKIPPED outside CI: {message}");
    }
    found
}

/// Cumulative successful and failed calls from SIPp's final statistics screen.
pub fn call_counts(screen: &str) -> (u32, u32) {
    let cumulative = |label: &str| {
        screen
            .lines()
            .rev()
            .find(|line| line.trim_start().starts_with(label))
            .and_then(|line| line.rsplit('|').next())
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(u32::MAX)
    };
    (cumulative("Successful call"), cumulative("Failed call"))
}
