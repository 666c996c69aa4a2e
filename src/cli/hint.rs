//! Printed hints that run as printed: the command that started this process, to put in
//! front of every `ringcast …` line the binary prints (`init`'s "Next:", `keys`, the
//! development banner, error hints).
//!
//! - found on `PATH` (started as plain `ringcast`, e.g. after `cargo install --path .`):
//!   `ringcast`;
//! - started by `cargo run` (cargo sets `CARGO_PKG_NAME` and `CARGO_MANIFEST_DIR` for the
//!   program it runs): `cargo run --release --` for a release build, `cargo run --` for a
//!   debug one — run from the checkout, as the first command was;
//! - started by a path (`target/release/ringcast`, `./ringcast`): that path, quoted for a
//!   shell where needed.

use std::path::Path;

/// The command prefix for hints (see the module docs).
pub fn command() -> String {
    let argument0 = std::env::args_os()
        .next()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    let by_cargo = std::env::var("CARGO_PKG_NAME").as_deref() == Ok(env!("CARGO_PKG_NAME"))
        && std::env::var_os("CARGO_MANIFEST_DIR").is_some();
    let profile = std::env::current_exe().ok().and_then(|exe| {
        exe.parent()
            .and_then(Path::file_name)
            .map(|name| name.to_string_lossy().into_owned())
    });
    command_for(&argument0, by_cargo, profile.as_deref())
}

/// [`command`] from its inputs: `argv[0]`, whether cargo ran the program, and the name of
/// the directory holding the executable (`release`, `debug`, …).
pub fn command_for(argument0: &str, by_cargo: bool, profile: Option<&str>) -> String {
    if by_cargo {
        return match profile {
            Some("release") => "cargo run --release --".into(),
            _ => "cargo run --".into(),
        };
    }
    if argument0.contains('/') {
        quote(argument0)
    } else {
        env!("CARGO_PKG_NAME").into()
    }
}

/// `text` as one shell word: unchanged when it holds only characters no shell treats
/// specially, else in single quotes.
pub fn quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:=@,%".contains(c));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// A path as one shell word.
pub fn path(path: &Path) -> String {
    quote(&path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_follows_how_the_binary_was_started() {
        assert_eq!(command_for("ringcast", false, Some("bin")), "ringcast");
        assert_eq!(
            command_for(
                "/work/ringcast/target/release/ringcast",
                true,
                Some("release")
            ),
            "cargo run --release --"
        );
        assert_eq!(
            command_for("target/debug/ringcast", true, Some("debug")),
            "cargo run --"
        );
        assert_eq!(
            command_for("target/release/ringcast", false, Some("release")),
            "target/release/ringcast"
        );
        assert_eq!(
            command_for("/opt/my tools/ringcast", false, None),
            "'/opt/my tools/ringcast'"
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("demo/ringcast.json"), "demo/ringcast.json");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
    }
}
