//! Train, evaluate and benchmark multigrid neural memory models: the library behind the
//! `mg-train` command line.

pub mod ask;
pub mod backend;
pub mod commands;
pub mod data_cmd;
pub mod demo;
pub mod download;
pub mod font;
pub mod harness;
pub mod model_config;
pub mod plot;
pub mod table;
pub mod tasks;
pub mod viz;
pub mod weights;

#[cfg(test)]
mod props;

/// The backend's random generator is global: unit tests that seed it or draw from it (any
/// model initialisation) take turns.
#[cfg(test)]
pub(crate) static SEEDED: std::sync::Mutex<()> = std::sync::Mutex::new(());
