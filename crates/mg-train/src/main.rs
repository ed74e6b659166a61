//! The `mg-train` command line.

mod backend;
mod bench;
mod data_cmd;
mod demo;
mod writer_run;

use std::process::ExitCode;

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
    /// Build the reference memory mesh, print its counts and write a few windows into it.
    Demo(demo::DemoArgs),
    /// Time a training window and an inference step of the reference memory mesh.
    Bench(bench::BenchArgs),
    /// Validate a dataset and print a summary.
    Data(data_cmd::DataArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Data(args) => data_cmd::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
