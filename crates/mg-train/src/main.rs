//! The `mg-train` command line: the clap front end of the `mg_train` library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mg_train::{ask, commands, data_cmd, demo, table, weights};

mod allocator;

/// Train, evaluate and benchmark multigrid neural memory models.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a model from an experiment config.
    Train(commands::TrainArgs),
    /// Continue a run from its newest checkpoint.
    Resume(commands::ResumeArgs),
    /// Evaluate a run on its task's fixed test set (P/R/F for mapping; bit or classification error for copy, sort and recall).
    Eval(commands::EvalArgs),
    /// Print a config's parameter and memory counts.
    Info(commands::InfoArgs),
    /// Draw one test sequence of a run (mapping: PNG frames and a GIF; copy, sort, recall: one PNG).
    Viz(commands::VizArgs),
    /// Plot the learning curves of several runs in one PNG (loss per unit against wall time
    /// or time steps).
    Compare(commands::CompareArgs),
    /// Write a run's weights to a safetensors file (tensor names are the model's module paths).
    Export(weights::ExportArgs),
    /// Start a new run from a safetensors file of a config's model (a checkpoint at time step 0).
    Import(weights::ImportArgs),
    /// Aggregate the eval.json of several runs (seeds) into mean ± σ per experiment, printed
    /// and written as JSON.
    Table(table::TableArgs),
    /// Build the reference memory mesh, print its counts and write a few windows into it.
    Demo(demo::DemoArgs),
    /// Time a training window (window and step paths) and an inference step of a model.
    Bench(commands::BenchArgs),
    /// Answer a bAbI question with a trained run: the story and the question on stdin, one
    /// sentence per line.
    Ask(ask::AskArgs),
    /// Validate a dataset and print a summary.
    Data(data_cmd::DataArgs),
}

fn main() -> ExitCode {
    allocator::keep_freed_memory();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Train(args) => commands::run_train(args),
        Command::Resume(args) => commands::run_resume(args),
        Command::Eval(args) => commands::run_eval(args),
        Command::Info(args) => commands::run_info(args),
        Command::Viz(args) => commands::run_viz(args),
        Command::Compare(args) => commands::run_compare(args),
        Command::Table(args) => table::run_table(args),
        Command::Export(args) => weights::run_export(args),
        Command::Import(args) => weights::run_import(args),
        Command::Demo(args) => demo::run(args),
        Command::Bench(args) => commands::run_bench(args),
        Command::Ask(args) => ask::run_ask(args),
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
