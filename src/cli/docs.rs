//! `completions SHELL` and `man`: shell completion scripts and the manual page, generated
//! from the same clap definitions as `--help`, so the three never disagree.

use anyhow::{Context, Result};
use clap::CommandFactory;
use serde_json::json;

use super::args::{CompletionShell, CompletionsArgs};
use super::{exit, Cli, Outcome};

pub fn completions(a: &CompletionsArgs) -> Result<Outcome> {
    let shell = match a.shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "cachevault", &mut script);
    let script = String::from_utf8(script).context("the completion script is not UTF-8")?;
    Ok(Outcome::new(
        json!({"shell": shell.to_string(), "script": script}),
        script,
        exit::OK,
    ))
}

pub fn man() -> Result<Outcome> {
    let cmd = Cli::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut page)
        .context("rendering the manual page")?;
    // Each command after the overview, in one page: its synopsis, description, options and
    // example, as `cachevault COMMAND --help` shows them.
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("cachevault {}", sub.get_name());
        let sub = sub
            .clone()
            .bin_name(name.clone())
            .display_name(name.clone());
        page.extend_from_slice(format!(".SH \"COMMAND: {}\"\n", name.to_uppercase()).as_bytes());
        let man = clap_mangen::Man::new(sub);
        man.render_synopsis_section(&mut page)
            .and_then(|()| man.render_description_section(&mut page))
            .and_then(|()| man.render_options_section(&mut page))
            .and_then(|()| man.render_subcommands_section(&mut page))
            .and_then(|()| man.render_extra_section(&mut page))
            .with_context(|| format!("rendering the manual page of {name}"))?;
    }
    let page = String::from_utf8(page).context("the manual page is not UTF-8")?;
    Ok(Outcome::new(json!({"roff": page}), page, exit::OK))
}
