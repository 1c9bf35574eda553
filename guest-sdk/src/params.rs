//! Request parameters with typed accessors and defaults.

use crate::Error;
use crate::bindings::conduit::compute::types::{self as wit, ParamValue};

/// The parameters of one request (KServe v2 `parameters`).
#[derive(Debug, Clone, Default)]
pub struct Params {
    params: Vec<wit::Param>,
}

impl Params {
    pub(crate) fn from_wit(params: Vec<wit::Param>) -> Self {
        Self { params }
    }

    /// The raw value of `name`, if given.
    pub fn get(&self, name: &str) -> Option<&ParamValue> {
        self.params
            .iter()
            .find(|p| p.name == name)
            .map(|p| &p.value)
    }

    /// `name` as an integer, or `default` when absent. Strings holding integers are accepted.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the value is not an integer.
    pub fn i64_or(&self, name: &str, default: i64) -> Result<i64, Error> {
        match self.get(name) {
            None => Ok(default),
            Some(ParamValue::Int64(v)) => Ok(*v),
            Some(ParamValue::Uint64(v)) => i64::try_from(*v).map_err(|_| bad(name, "an int64")),
            Some(ParamValue::String(s)) => s.trim().parse().map_err(|_| bad(name, "an integer")),
            Some(_) => Err(bad(name, "an integer")),
        }
    }

    /// `name` as a float, or `default` when absent. Integers and numeric strings are accepted.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the value is not a number.
    pub fn f64_or(&self, name: &str, default: f64) -> Result<f64, Error> {
        match self.get(name) {
            None => Ok(default),
            Some(ParamValue::Double(v)) => Ok(*v),
            Some(ParamValue::Int64(v)) => Ok(*v as f64),
            Some(ParamValue::Uint64(v)) => Ok(*v as f64),
            Some(ParamValue::String(s)) => s.trim().parse().map_err(|_| bad(name, "a number")),
            Some(ParamValue::Bool(_)) => Err(bad(name, "a number")),
        }
    }

    /// `name` as a boolean, or `default` when absent (`"true"`/`"false"` strings accepted).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the value is not a boolean.
    pub fn bool_or(&self, name: &str, default: bool) -> Result<bool, Error> {
        match self.get(name) {
            None => Ok(default),
            Some(ParamValue::Bool(v)) => Ok(*v),
            Some(ParamValue::String(s)) => s.trim().parse().map_err(|_| bad(name, "a boolean")),
            Some(_) => Err(bad(name, "a boolean")),
        }
    }

    /// `name` as a string, or `default` when absent.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the value is not a string.
    pub fn str_or<'a>(&'a self, name: &str, default: &'a str) -> Result<&'a str, Error> {
        match self.get(name) {
            None => Ok(default),
            Some(ParamValue::String(s)) => Ok(s),
            Some(_) => Err(bad(name, "a string")),
        }
    }
}

fn bad(name: &str, what: &str) -> Error {
    Error::invalid_input(format!("parameter `{name}` must be {what}"))
}
