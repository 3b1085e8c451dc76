//! Named crash points for the fault tests.
//!
//! `BTT_FAILPOINT=name[,name…]` makes the process abort where the code calls
//! [`hit`] with one of those names: no destructor runs and nothing is
//! flushed, as with `kill -9`. The fault matrix in the end-to-end tests
//! kills each protocol step this way and checks that a restart loses no
//! funds and pays nothing twice. `name=pause:MS` makes the process sleep
//! there instead, to hold a race window open for a test (another command
//! running between two steps). Compiled into every build: outside the
//! tests the variable is unset and a hit costs one comparison.

use std::sync::OnceLock;

/// What an armed point does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Abort,
    Pause(std::time::Duration),
}

/// `name` or `name=pause:MS`; anything else arms nothing.
fn parse(item: &str) -> Option<(String, Action)> {
    let item = item.trim();
    match item.split_once('=') {
        None if !item.is_empty() => Some((item.to_string(), Action::Abort)),
        None => None,
        Some((name, how)) => {
            let ms = how.strip_prefix("pause:")?.parse().ok()?;
            Some((
                name.to_string(),
                Action::Pause(std::time::Duration::from_millis(ms)),
            ))
        }
    }
}

/// Aborts the process (or pauses it) if `name` is armed in `BTT_FAILPOINT`.
pub fn hit(name: &str) {
    static ARMED: OnceLock<Vec<(String, Action)>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| {
        std::env::var("BTT_FAILPOINT")
            .map(|v| v.split(',').filter_map(parse).collect())
            .unwrap_or_default()
    });
    match armed.iter().find(|(n, _)| n == name) {
        Some((_, Action::Abort)) => {
            eprintln!("failpoint {name}: aborting");
            std::process::abort();
        }
        Some((_, Action::Pause(d))) => {
            eprintln!("failpoint {name}: pausing {d:?}");
            std::thread::sleep(*d);
        }
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_parse() {
        assert_eq!(parse(" a "), Some(("a".into(), Action::Abort)));
        assert_eq!(
            parse("b=pause:250"),
            Some((
                "b".into(),
                Action::Pause(std::time::Duration::from_millis(250))
            ))
        );
        assert_eq!(parse("c=sleep:1"), None);
        assert_eq!(parse(""), None);
    }
}
