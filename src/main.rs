//! `ivr`: wires the command line to the library.

use clap::Parser;
use ivr::cli::{self, Cli, Command};

fn main() {
    let cli = Cli::parse();
    let code = match &cli.command {
        Command::Check { paths } => cli::check::run(paths),
        Command::Call(args) => cli::call::run(args),
        Command::Graph { flow, dirs } => cli::graph::run(flow, dirs),
    };
    std::process::exit(code);
}
