//! Printing a lint [`Report`]: text (the default), JSON, SARIF 2.1.0 and
//! GitHub Actions annotations. Reporters only format; they never decide
//! what is a finding, and they never print the summary (the CLI writes it
//! to stderr).

mod github;
mod json;
mod sarif;
mod text;

use super::Report;

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// `FILE:LINE:COL: error[EGxxx] message` and a `help:` line.
    #[default]
    Text,
    /// One JSON object with a `findings` array.
    Json,
    /// SARIF 2.1.0, for GitHub code scanning.
    Sarif,
    /// `::error file=...,line=...::` workflow commands.
    Github,
}

/// The report as `format`, for stdout.
pub fn render(report: &Report, format: Format) -> String {
    render_with_color(report, format, false)
}

/// Like [`render`]; `color` adds ANSI colours to the text format only.
pub fn render_with_color(report: &Report, format: Format, color: bool) -> String {
    match format {
        Format::Text => text::render(report, color),
        Format::Json => json::render(report),
        Format::Sarif => sarif::render(report),
        Format::Github => github::render(report),
    }
}

/// A message with its help line, as the machine formats carry it in one
/// text field: `MESSAGE\nhelp: HELP`.
fn with_help(message: &str, help: Option<&str>) -> String {
    match help {
        Some(h) => format!("{message}\nhelp: {h}"),
        None => message.to_string(),
    }
}
