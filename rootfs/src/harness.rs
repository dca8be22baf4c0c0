//! Harnesses of function-style runs, one per language (`harness/<language>/`). Compiled
//! into the binaries like the language table; the agent writes the file into the run's
//! /box next to the user's source (read-only there while it runs).

/// A language's harness: its file and the command that runs it in /box. The harness reads
/// the request `{source, entry, name, args, maxSteps}` from stdin; see harness/README.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Harness {
    pub file_name: &'static str,
    pub source: &'static str,
    pub run: &'static [&'static str],
    /// For compiled languages: the compile command of function-style runs, which links the
    /// harness with the user's code (instead of the language's own command).
    pub compile: Option<&'static [&'static str]>,
}

const PYTHON: Harness = Harness {
    file_name: "__harness__.py",
    source: include_str!("../harness/python/harness.py"),
    run: &["/usr/bin/python3", "-S", "-B", "__harness__.py"],
    compile: None,
};

const JAVASCRIPT: Harness = Harness {
    file_name: "__harness__.js",
    source: include_str!("../harness/javascript/harness.js"),
    run: &["/usr/bin/node", "__harness__.js"],
    compile: None,
};

/// `-rdynamic` exports the user's functions, so the harness finds them by name (dlsym);
/// flags otherwise as languages.toml's `c`.
const C: Harness = Harness {
    file_name: "__harness__.c",
    source: include_str!("../harness/c/harness.c"),
    run: &["./main"],
    compile: Some(&["/usr/bin/gcc", "-O2", "-std=gnu17", "-pipe", "-rdynamic", "-o", "main", "__harness__.c", "main.c", "-lm"]),
};

/// The harness of a language id of languages.toml, if function-style runs support it.
pub fn harness(language: &str) -> Option<Harness> {
    match language {
        "python" => Some(PYTHON),
        "javascript" => Some(JAVASCRIPT),
        "c" => Some(C),
        _ => None,
    }
}
