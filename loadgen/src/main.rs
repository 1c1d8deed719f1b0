//! `loadgen` binary: parse the command line, dispatch, map outcomes to exit codes
//! (0 ok, 99 threshold failed, 2 usage/config, 3 invalid run, 1 other error).

use std::process::ExitCode;

use clap::Parser;
use loadgen::{preflight, raise_fd_limit, Cli, Command, Plan, RunOpt};

/// A threshold or a compare regression failed.
const EXIT_THRESHOLD: u8 = 99;
/// Usage or configuration error.
const EXIT_USAGE: u8 = 2;
/// The run is not valid.
const EXIT_INVALID: u8 = 3;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let outcome = match cli.command {
        Command::Run(opt) => run(&opt),
        Command::Compare(opt) => {
            loadgen::compare::compare_command(&opt)
                .map(|worse| if worse { EXIT_THRESHOLD } else { 0 })
        }
        Command::Merge(opt) => loadgen::merge::merge_command(&opt).map(|_| 0),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("loadgen: error: {error:#}");
            let usage = error.downcast_ref::<UsageError>().is_some()
                || error.downcast_ref::<loadgen::compare::Refusal>().is_some();
            ExitCode::from(if usage { EXIT_USAGE } else { 1 })
        }
    }
}

/// Marks errors that are the user's configuration (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
struct UsageError(anyhow::Error);

/// `loadgen run`: validate, preflight, run, print, decide the exit code.
fn run(opt: &RunOpt) -> anyhow::Result<u8> {
    let plan = Plan::from_opt(opt).map_err(|e| anyhow::Error::new(UsageError(e)))?;
    let fd_limit = raise_fd_limit()?;
    let scenario = &plan.scenario;
    let destinations = plan
        .targets
        .iter()
        .map(|t| t.addr)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    preflight(
        scenario.connections(),
        fd_limit,
        scenario.src.len(),
        destinations,
    )
    .map_err(|e| anyhow::Error::new(UsageError(e)))?;
    let output = loadgen::run(plan, opt.quiet)?;
    print!("{}", loadgen::report::summary::render(&output.report));
    let results = &output.report.results;
    Ok(if !results.valid {
        EXIT_INVALID
    } else if results.thresholds.iter().any(|t| !t.passed) {
        EXIT_THRESHOLD
    } else {
        0
    })
}
