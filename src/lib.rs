//! `ivr`: an IVR engine for public health centres.
//!
//! Layout:
//! - [`flow`]: call-flow files (model, loading with `file:line:col` errors, validation), and the
//!   pure engine `flow::step`.
//! - [`prompts`]: prompt catalogues per language, placeholders and how values are read aloud.
//! - [`response`]: what the engine wants the phone to do, independent of any carrier.

pub mod flow;
pub mod prompts;
pub mod response;
