//! The staff pages in a real headless Chromium over WebDriver (`common::browser`): signing in
//! and out, throttling, idle expiry, forms' tokens, roles, the users page and the audit log;
//! and, with `IVR_TEST_SCREENSHOTS=DIR`, screenshots of each page in Japanese and English at a
//! phone's width and a desk's.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod figures;
mod queue;
mod report;
mod screenshots;
mod today;
mod trends;
mod ui;
