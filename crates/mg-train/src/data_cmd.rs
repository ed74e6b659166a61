//! `mg-train data`: validate a dataset and print a summary.

use clap::Args;

/// Arguments of `mg-train data`.
#[derive(Args, Debug)]
pub struct DataArgs {
    /// Which dataset to check: mapping, sort, recall, mnist or babi.
    pub dataset: String,
}

/// Runs `mg-train data`.
pub fn run(args: &DataArgs) -> anyhow::Result<()> {
    anyhow::bail!("dataset `{}` is not supported yet", args.dataset)
}
