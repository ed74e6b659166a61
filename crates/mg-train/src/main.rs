//! The `mg-train` command line.

mod data_cmd;

use clap::{Parser, Subcommand};

/// Train, evaluate and benchmark multigrid neural memory models.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a dataset and print a summary.
    Data(data_cmd::DataArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Command::Data(args) => data_cmd::run(args),
    }
}
