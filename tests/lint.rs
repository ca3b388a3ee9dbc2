//! `egressgen lint` as a spec: every manifest in `tests/lint/` is linted and
//! its text output snapshotted (`snapshots/lint__fixture@*.snap`). A
//! fixture whose first line is `# lint-config: FILE` is linted with
//! `--config tests/lint/FILE`. The other tests pin the output formats,
//! directories, `render` agreement and the README table.

use std::path::Path;

use egressgen::config::{self, Overrides};
use egressgen::lint::report::{Format, render};
use egressgen::lint::{self, Options, Source};

fn source(path: &Path) -> Source {
    let rel = path
        .strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(path)
        .display()
        .to_string();
    Source {
        name: rel,
        text: std::fs::read_to_string(path).unwrap(),
    }
}

fn options_for(text: &str) -> Options {
    let Some(cfg) = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# lint-config: "))
    else {
        return Options::default();
    };
    let name = format!("tests/lint/{}", cfg.trim());
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(&name);
    let (cfg, _) = config::load(&path, &Overrides::default()).unwrap();
    let mut opts = Options::default();
    opts.config_from_file(cfg, &name);
    opts
}

#[test]
fn fixture() {
    insta::with_settings!({snapshot_path => "../snapshots", prepend_module_to_snapshot => true}, {
        insta::glob!("lint/*.yaml", |path| {
            let src = source(path);
            let opts = options_for(&src.text);
            let report = lint::run(std::slice::from_ref(&src), &opts);
            assert!(report.input_errors.is_empty(), "{:?}", report.input_errors);
            let out = format!("{}{}\n", render(&report, Format::Text), report.summary());
            insta::assert_snapshot!(out);
        });
    });
}

/// Every code has a fixture named after it that reports it.
#[test]
fn every_code_has_a_fixture_that_reports_it() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lint");
    for rule in lint::rules::RULES {
        let prefix = format!("{}_", rule.code.to_ascii_lowercase());
        let fixture = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&prefix)
            })
            .unwrap_or_else(|| panic!("no fixture tests/lint/{prefix}*.yaml"));
        let src = source(&fixture);
        let report = lint::run(std::slice::from_ref(&src), &options_for(&src.text));
        assert!(
            report.findings.iter().any(|f| f.code == rule.code),
            "{} does not report {}",
            fixture.display(),
            rule.code
        );
    }
}

fn lint_one(path: &str) -> lint::Report {
    let src = source(&Path::new(env!("CARGO_MANIFEST_DIR")).join(path));
    lint::run(&[src], &Options::default())
}

#[test]
fn json_findings_carry_position_code_and_resource() {
    let report = lint_one("tests/lint/seed_reference.yaml");
    let v: serde_json::Value = serde_json::from_str(&render(&report, Format::Json)).unwrap();
    let findings = v["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 3);
    let ef = findings.iter().find(|f| f["code"] == "EG018").unwrap();
    assert_eq!(ef["file"], "tests/lint/seed_reference.yaml");
    assert_eq!(ef["line"], 188);
    assert_eq!(ef["column"], 5);
    assert_eq!(ef["severity"], "error");
    assert_eq!(
        ef["resource"],
        serde_json::json!({"kind": "EnvoyFilter", "namespace": "istio-system", "name": "sni-magic"})
    );
    assert!(
        ef["message"]
            .as_str()
            .unwrap()
            .contains("every proxy in the mesh")
    );
    assert_eq!(v["summary"]["errors"], 2);
    assert_eq!(v["summary"]["warnings"], 1);
}

#[test]
fn sarif_is_valid_for_code_scanning() {
    let report = lint_one("tests/lint/seed_reference.yaml");
    let v: serde_json::Value = serde_json::from_str(&render(&report, Format::Sarif)).unwrap();
    assert_eq!(v["version"], "2.1.0");
    let run = &v["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), lint::rules::RULES.len());
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    for r in results {
        let idx = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[idx]["id"], r["ruleId"]);
        let region = &r["locations"][0]["physicalLocation"]["region"];
        assert!(region["startLine"].as_u64().unwrap() >= 1);
        assert_eq!(
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            "tests/lint/seed_reference.yaml"
        );
    }
    // Clean input: an empty results array, not a missing one.
    let clean = lint_one("tests/lint/clean_rendered.yaml");
    let v: serde_json::Value = serde_json::from_str(&render(&clean, Format::Sarif)).unwrap();
    assert_eq!(v["runs"][0]["results"], serde_json::json!([]));
}

#[test]
fn github_annotations() {
    let report = lint_one("tests/lint/seed_reference.yaml");
    let out = render(&report, Format::Github);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(
        lines[1].starts_with(
            "::error file=tests/lint/seed_reference.yaml,line=188,col=5,title=EG018::"
        ),
        "{}",
        lines[1]
    );
    assert!(lines[0].starts_with("::warning file="), "{}", lines[0]);
    // One annotation per line: the help is joined with an escaped newline.
    assert!(
        lines[1].contains("%0Ahelp: add `workloadSelector.labels`"),
        "{}",
        lines[1]
    );
}

fn render_manifest(domains: &[String]) -> (config::Config, String) {
    let (cfg, _) = config::from_domains(domains, &Overrides::default()).unwrap();
    let manifest = egressgen::render::render(&cfg).unwrap().manifest;
    (cfg, manifest)
}

#[test]
fn rendered_manifests_lint_clean_with_and_without_config() {
    let small: Vec<String> = ["*.wikipedia.org", "api.github.com"]
        .map(String::from)
        .to_vec();
    // 20,000 domains: split ServiceEntries and VirtualServices.
    let big: Vec<String> = (0..20_000)
        .map(|i| format!("host-{i}.example{}.com", i % 97))
        .collect();
    for domains in [small, big] {
        let (cfg, manifest) = render_manifest(&domains);
        let src = Source {
            name: "rendered.yaml".into(),
            text: manifest,
        };
        let plain = lint::run(std::slice::from_ref(&src), &Options::default());
        assert!(
            plain.findings.is_empty(),
            "{:#?}",
            &plain.findings[..plain.findings.len().min(5)]
        );
        let mut opts = Options::default();
        opts.config_from_file(cfg, "egress.yaml");
        let with_config = lint::run(&[src], &opts);
        assert!(
            with_config.findings.is_empty(),
            "{:#?}",
            &with_config.findings[..with_config.findings.len().min(5)]
        );
    }
}

#[test]
fn split_lists_are_unioned_and_a_dropped_chunk_is_drift() {
    let domains: Vec<String> = (0..600).map(|i| format!("h{i}.example.com")).collect();
    let (_, manifest) = render_manifest(&domains);
    assert!(
        manifest.contains("name: wildcard-3"),
        "expected three ServiceEntries"
    );
    // Drop the third ServiceEntry: its 88 hosts are now missing there.
    let docs: Vec<&str> = manifest
        .split("\n---\n")
        .filter(|d| !d.contains("name: wildcard-3\n"))
        .collect();
    let report = lint::run(
        &[Source {
            name: "m.yaml".into(),
            text: docs.join("\n---\n"),
        }],
        &Options::default(),
    );
    let missing: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.code == "EG001")
        .collect();
    assert_eq!(missing.len(), 600 - 512);
    assert!(
        missing
            .iter()
            .all(|f| f.message.contains("missing from ServiceEntry hosts"))
    );
}

#[test]
fn drift_across_files_in_a_directory() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lint_dirs/split");
    let filter = lint::load::Filter::new(&[], &["charts/**".to_string()]).unwrap();
    let sources = lint::load::read_paths(std::slice::from_ref(&root), &filter, "-").unwrap();
    let names: Vec<String> = sources
        .iter()
        .map(|s| {
            Path::new(&s.name)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        names,
        [
            "envoyfilter.yaml",
            "serviceentry.yml",
            "virtualservice.yaml"
        ]
    );
    let report = lint::run(&sources, &Options::default());
    let eg001: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.code == "EG001")
        .collect();
    assert_eq!(eg001.len(), 1);
    assert!(eg001[0].file.ends_with("serviceentry.yml"));
    assert_eq!((eg001[0].line, eg001[0].column), (8, 3));
    assert!(
        eg001[0].message.contains("virtualservice.yaml:8"),
        "{}",
        eg001[0].message
    );
    // Each stray occurrence is reported in its own file.
    let stray_files: Vec<&str> = report
        .findings
        .iter()
        .filter(|f| f.code == "EG002")
        .map(|f| f.file.as_str())
        .collect();
    assert!(
        stray_files
            .iter()
            .any(|f| f.ends_with("virtualservice.yaml"))
    );
    assert!(stray_files.iter().any(|f| f.ends_with("envoyfilter.yaml")));

    // Without the exclude, the chart's stray host shows up too.
    let all = lint::load::read_paths(&[root], &lint::load::Filter::default(), "-").unwrap();
    assert_eq!(all.len(), 4);
    let report = lint::run(&all, &Options::default());
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.message.contains("stray.example.com"))
    );
}

#[test]
fn ignore_option_and_annotation_silence_codes() {
    let src = source(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lint/seed_reference.yaml"));
    let report = lint::run(
        &[src],
        &Options {
            ignore: vec!["EG018".into(), "EG020".into()],
            ..Options::default()
        },
    );
    let codes: Vec<&str> = report.findings.iter().map(|f| f.code).collect();
    assert_eq!(codes, ["EG019"]);
    let annotated = lint_one("tests/lint/suppressed_by_annotation.yaml");
    assert!(
        annotated
            .findings
            .iter()
            .all(|f| f.resource.as_ref().unwrap().kind != "ServiceEntry")
    );
    assert!(!annotated.findings.is_empty());
}

#[test]
fn kind_list_items_have_their_own_lines() {
    let report = lint_one("tests/lint/seed_reference.yaml");
    let telemetry = report.findings.iter().find(|f| f.code == "EG020").unwrap();
    // The Telemetry is the 7th item of the List, not the List's first line.
    assert_eq!(telemetry.line, 176);
    assert_eq!(telemetry.resource.as_ref().unwrap().name, "mesh-default");
}

/// The lint table in README.md is generated from the rule docs; regenerate it with
/// `UPDATE_README=1 cargo test --test lint readme`.
#[test]
fn readme_table_matches_rule_docs() {
    let (start, end) = ("<!-- lint-rules:start -->\n", "<!-- lint-rules:end -->");
    let table = lint::rules::markdown_table();
    let mut checked = 0;
    for file in ["README.md"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let (Some(s), Some(e)) = (text.find(start), text.find(end)) else {
            continue;
        };
        checked += 1;
        let updated = format!("{}{start}{table}{}", &text[..s], &text[e..]);
        if std::env::var_os("UPDATE_README").is_some() {
            std::fs::write(&path, &updated).unwrap();
        } else {
            assert!(
                text == updated,
                "the lint table in {file} is stale; run UPDATE_README=1 cargo test --test lint readme"
            );
        }
    }
    assert!(checked > 0, "no file holds the lint-rules markers");
}

/// Bad input, one file each in `tests/lint_errors/`: the message a user sees
/// (`FILE:LINE:COL: error: ...`), snapshotted like findings.
#[test]
fn bad_input() {
    insta::with_settings!({snapshot_path => "../snapshots", prepend_module_to_snapshot => true}, {
        insta::glob!("lint_errors/*.yaml", |path| {
            // cargo runs tests in the package root, so the relative path reads.
            let rel = path.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap().to_path_buf();
            let out = match lint::load::read_paths(std::slice::from_ref(&rel), &lint::load::Filter::default(), "-") {
                Err(e) => format!("{e}\n"),
                Ok(sources) => {
                    let report = lint::run(&sources, &Options::default());
                    assert!(!report.input_errors.is_empty(), "{} parsed", rel.display());
                    assert_eq!(report.exit_code(false), 2);
                    report.input_errors.iter().map(|e| format!("{e}\n")).collect()
                }
            };
            assert!(out.contains("\n  help: "), "{}: no help line: {out}", rel.display());
            insta::assert_snapshot!(out);
        });
    });
}

/// Hostile names and hosts cannot move the cursor, fake a finding line or
/// break the annotation format.
#[test]
fn untrusted_values_are_escaped_in_every_format() {
    let text = "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata:\n  name: \"evil\\n/x.yaml:1:1: error[EG000] fake\"\n  namespace: \"\\e[2Jns\"\nspec:\n  configPatches: []\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: se\nspec:\n  hosts:\n  - \"a.example.com\\n::error::fake\"\n  - \"\\e]0;title\\a.example.com\"\n";
    let report = lint::run(
        &[Source {
            name: "evil\u{1b}[31m.yaml".into(),
            text: text.into(),
        }],
        &Options::default(),
    );
    assert!(report.input_errors.is_empty(), "{:?}", report.input_errors);
    assert!(report.findings.iter().any(|f| f.code == "EG018"));
    assert!(report.findings.iter().any(|f| f.code == "EG005"));
    for format in [Format::Text, Format::Github] {
        let out = render(&report, format);
        assert!(!out.contains('\u{1b}'), "{format:?}: {out}");
        assert!(!out.contains('\u{7}'), "{format:?}: {out}");
        for line in out.lines() {
            assert!(
                line.starts_with("evil") || line.starts_with("  help:") || line.starts_with("::"),
                "{format:?}: a finding spilled onto its own line: {line}"
            );
        }
    }
    for format in [Format::Json, Format::Sarif] {
        let out = render(&report, format);
        serde_json::from_str::<serde_json::Value>(&out).unwrap();
        assert!(!out.contains('\u{1b}'), "{format:?}");
    }
}

/// Every rule is documented in ruff's four sections, and its code and name
/// follow the pattern.
#[test]
fn every_rule_doc_has_the_four_sections() {
    for (i, rule) in lint::rules::RULES.iter().enumerate() {
        assert_eq!(
            rule.code,
            format!("EG{:03}", i + 1),
            "codes are dense and in order"
        );
        assert!(
            rule.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '-'),
            "{}: name {:?} is not kebab-case",
            rule.code,
            rule.name
        );
        for section in ["What it does", "Why is this bad?", "Example", "Use instead"] {
            assert!(
                !rule.section(section).is_empty(),
                "{}: no `## {section}`",
                rule.code
            );
        }
        assert!(rule.section("Example").contains("```yaml"), "{}", rule.code);
    }
}
