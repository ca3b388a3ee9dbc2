//! Property tests: random and mutated manifests through the loader and
//! every rule. Whatever the input, lint returns a report (findings or
//! input errors) and never panics; every finding points at a real line.

use egressgen::lint::{self, Options, Source};
use proptest::prelude::*;

const SEEDS: &[&str] = &[
    include_str!("lint/clean_rendered.yaml"),
    include_str!("lint/seed_reference.yaml"),
    include_str!("lint/eg001_missing_host.yaml"),
    include_str!("lint/eg014_tls_not_istio_mutual.yaml"),
    include_str!("lint/eg023_gateway_references.yaml"),
    include_str!("lint/eg024_patch_context_not_gateway.yaml"),
    include_str!("lint/eg025_tls_inspector_wrong_type.yaml"),
];

fn check(text: String) -> Result<(), TestCaseError> {
    let lines = text.lines().count() as u32 + 1;
    let report = lint::run(
        &[Source {
            name: "fuzz.yaml".into(),
            text,
        }],
        &Options::default(),
    );
    for f in &report.findings {
        prop_assert!(f.line >= 1 && f.line <= lines, "{f:?}");
        prop_assert!(f.column >= 1, "{f:?}");
    }
    for e in &report.input_errors {
        if let Some(at) = e.at {
            prop_assert!(at.line >= 1 && at.column >= 1, "{e}");
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize, usize),
    Insert(usize, String),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    Replace(usize, char),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let yamlish = prop_oneof![
        Just(": ".to_string()),
        Just("- ".to_string()),
        Just("\n  ".to_string()),
        Just("---\n".to_string()),
        Just("[".to_string()),
        Just("{".to_string()),
        Just("&a ".to_string()),
        Just("*a".to_string()),
        Just("!!int ".to_string()),
        Just("\"".to_string()),
        Just("kind: List\nitems:\n".to_string()),
        "\\PC{0,8}",
    ];
    prop_oneof![
        (any::<usize>(), 0usize..64).prop_map(|(a, n)| Mutation::Delete(a, n)),
        (any::<usize>(), yamlish).prop_map(|(a, s)| Mutation::Insert(a, s)),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        (any::<usize>(), any::<char>()).prop_map(|(a, c)| Mutation::Replace(a, c)),
    ]
}

fn apply(text: &str, muts: &[Mutation]) -> String {
    let mut s: Vec<char> = text.chars().collect();
    for m in muts {
        let n = s.len().max(1);
        match m {
            Mutation::Delete(a, len) => {
                let a = a % n;
                let b = (a + len).min(s.len());
                if a < b {
                    s.drain(a..b);
                }
            }
            Mutation::Insert(a, t) => {
                let a = a % (s.len() + 1);
                s.splice(a..a, t.chars());
            }
            Mutation::Replace(a, c) => {
                if !s.is_empty() {
                    let a = a % s.len();
                    s[a] = *c;
                }
            }
            Mutation::DuplicateLine(a) | Mutation::SwapLines(a, _) => {
                let joined: String = s.iter().collect();
                let mut lines: Vec<String> = joined.lines().map(str::to_string).collect();
                if lines.is_empty() {
                    continue;
                }
                let i = a % lines.len();
                match m {
                    Mutation::DuplicateLine(_) => {
                        let l = lines[i].clone();
                        lines.insert(i, l);
                    }
                    Mutation::SwapLines(_, b) => {
                        let j = b % lines.len();
                        lines.swap(i, j);
                    }
                    _ => {}
                }
                s = (lines.join("\n") + "\n").chars().collect();
            }
        }
    }
    s.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_manifests_never_panic(
        seed in 0..SEEDS.len(),
        muts in proptest::collection::vec(mutation(), 1..6),
    ) {
        check(apply(SEEDS[seed], &muts))?;
    }

    #[test]
    fn random_yaml_like_text_never_panics(text in "[a-z:\\-\\[\\]{}&*!|>'\" \n#0-9.,]{0,300}") {
        check(text)?;
    }

    #[test]
    fn random_bytes_are_refused_or_linted(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        match lint::load::text_from_bytes(bytes, "fuzz.yaml") {
            Ok(text) => check(text)?,
            Err(e) => prop_assert!(e.message.starts_with("not a YAML text file"), "{e}"),
        }
    }
}
