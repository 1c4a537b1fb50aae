//! `warden completions SHELL` and `warden man [--dir DIR]`: shell completions and manual pages
//! generated from the same clap definitions the parser uses, so they cannot fall out of step
//! with the commands (crates/warden/tests/completions.rs checks that they do not).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, CommandFactory};

use crate::output::Output;

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to complete for: bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub(crate) struct ManArgs {
    /// Write one page per command and subcommand into DIR (`warden.1`, `warden-ca.1`,
    /// `warden-ca-init.1`, …) instead of printing them all to stdout.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub(crate) fn completions(args: &CompletionsArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let mut cmd = crate::cli::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "warden", &mut script);
    out.raw(&script)?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn man(args: &ManArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let pages = pages()?;
    match &args.dir {
        Some(dir) => {
            for (name, page) in &pages {
                let path = dir.join(format!("{name}.1"));
                warden_files::write_atomic(&path, page, warden_files::Mode::Public)
                    .with_context(|| format!("could not write {}", path.display()))?;
            }
            out.progress(format!(
                "wrote {} manual pages to {}",
                pages.len(),
                dir.display()
            ));
        }
        // One stream of pages, each with its own `.TH`: `warden man | man -l -` shows them all.
        None => out.raw(
            &pages
                .iter()
                .flat_map(|(_, p)| p.iter().copied())
                .collect::<Vec<u8>>(),
        )?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Every page, the top-level one first, then each subcommand depth-first, named the way
/// `man` looks them up (`warden-ca-init`).
fn pages() -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut cmd = crate::cli::Cli::command();
    cmd.build();
    let mut pages = Vec::new();
    collect(&cmd, "warden", &mut pages)?;
    Ok(pages)
}

fn collect(
    cmd: &clap::Command,
    name: &str,
    pages: &mut Vec<(String, Vec<u8>)>,
) -> anyhow::Result<()> {
    let mut page = Vec::new();
    // The page is titled and named `warden-ca-init`, the way `man` looks it up; the usage
    // line keeps the command's own name.
    clap_mangen::Man::new(
        cmd.clone()
            .display_name(name.to_owned())
            .version(env!("CARGO_PKG_VERSION")),
    )
    .title(name)
    .render(&mut page)
    .with_context(|| format!("could not render the manual page of {name}"))?;
    pages.push((name.to_owned(), page));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        collect(sub, &format!("{name}-{}", sub.get_name()), pages)?;
    }
    Ok(())
}
