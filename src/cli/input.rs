//! Reading a configuration file (the code is shared with the browser
//! playground: see [`crate::report::input`]).

pub use crate::report::input::{labels, load, parse, select, Document, InputError};
