//! Load generators and benchmarks of the pipeline; each binary under
//! `src/bin/` measures one stage against the real engines and prints its
//! figures, recorded in `benches/README.md`.
