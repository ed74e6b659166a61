//! Models built from multigrid memory layers: the memory mesh (writer), readers and baselines.
