//! Datasets of the multigrid-memory experiments: mapping worlds, sort, recall, MNIST and bAbI.
