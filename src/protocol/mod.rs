//! The wire format, with no state: the parser, the text tern writes, INFO and JSON.

pub mod info;
pub mod json;
pub mod parser;
#[cfg(test)]
mod parser_tests;
pub mod wire;
