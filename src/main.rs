//! The `misfit` command line: parses arguments and dispatches to the
//! library, which does the work and the printing. The arguments of each
//! command and its `run` are in `cli/`, one file per command; process
//! tuning (allocator, threads) in `cli/process.rs`.

mod cli;

use clap::Parser;
use std::process::ExitCode;

use cli::{Cli, Command};

fn main() -> ExitCode {
    cli::process::tune();
    let done = match Cli::parse().command {
        Command::Audit(a) => cli::audit::run(a),
        Command::Data(c) => cli::data::run(c),
        Command::Score(a) => cli::score::run(a),
        Command::Bench(c) => cli::bench::run(c),
        Command::Findings(a) => cli::findings::run(a),
        Command::Query(a) => cli::query::run(a),
        Command::Report(a) => cli::report::run(a),
        Command::Ticket(a) => cli::ticket::run(a),
    };
    match done {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", misfit::escape::terminal(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}
