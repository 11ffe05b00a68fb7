//! Renderers: one file per format, each reading a [`crate::report::ReportInput`].

pub mod html;
pub mod json;
pub mod junit;
pub mod markdown;
