//! Named crash points for the fault tests.
//!
//! `BTT_FAILPOINT=name[,name…]` makes the process abort where the code calls
//! [`hit`] with one of those names: no destructor runs and nothing is
//! flushed, as with `kill -9`. The fault matrix in the end-to-end tests
//! kills each protocol step this way and checks that a restart loses no
//! funds and pays nothing twice. Compiled into every build: outside the
//! tests the variable is unset and a hit costs one comparison.

use std::sync::OnceLock;

/// Aborts the process if `name` is one of `BTT_FAILPOINT`'s names.
pub fn hit(name: &str) {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    let names = NAMES.get_or_init(|| {
        std::env::var("BTT_FAILPOINT")
            .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default()
    });
    if names.iter().any(|n| n == name) {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}
