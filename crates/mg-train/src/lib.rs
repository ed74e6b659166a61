//! Train, evaluate and benchmark multigrid neural memory models: the library behind the
//! `mg-train` command line.

pub mod backend;
pub mod commands;
pub mod data_cmd;
pub mod demo;
pub mod download;
pub mod harness;
pub mod model_config;
pub mod tasks;
pub mod viz;

#[cfg(test)]
mod props;
