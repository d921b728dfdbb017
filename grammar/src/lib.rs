//! The network definition language.
