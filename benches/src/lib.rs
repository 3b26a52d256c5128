//! paotui-benches: criterion benches (`benches/`) for the hot paths and a governed query
//! end to end. Figures and how to reproduce them are in `BENCHMARKS.md`.
#![forbid(unsafe_code)]
