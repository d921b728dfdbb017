//! The `#[network]` attribute.
use proc_macro::TokenStream;

/// Compiles a network definition.
#[proc_macro_attribute]
pub fn network(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}
