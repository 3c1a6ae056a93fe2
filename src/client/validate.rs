//! Checks a call against the space's schema before anything is sent, so UNKNOWNSPACE,
//! UNKNOWNATTR, WRONGTYPE and DONTUSEKEY come back at once (daemons check again and never
//! trust the client).

use hyperdex_model::apply::{normalize_write, validate_checks, validate_get_partial};
use hyperdex_model::value::coerce;
use hyperdex_model::{Existence, KeyWrite, Operation, Reply, ReturnCode, Value};

use crate::config::Config;

/// Checks an operation against the schema before sending it.
pub fn validate(config: &Config, op: &Operation) -> Result<(), Reply> {
    let Some(space_name) = op.space() else {
        return Ok(());
    };
    let Some(space) = config.space(space_name) else {
        return Err(Reply::Error(
            ReturnCode::UnknownSpace,
            format!("unknown space \"{space_name}\""),
        ));
    };
    let schema = &space.schema;
    let key_ok = |k: &Value| {
        coerce(k.clone(), schema.key.datatype)
            .map(|_| ())
            .map_err(|e| {
                Reply::Error(
                    ReturnCode::WrongType,
                    format!("key \"{}\": {e}", schema.key.name),
                )
            })
    };
    match op {
        Operation::Get { key, .. } => key_ok(key),
        Operation::GetPartial { key, attrs, .. } => {
            key_ok(key)?;
            validate_get_partial(schema, attrs).map_err(|f| f.into_reply())
        }
        Operation::Write { write, .. } => normalize_write(schema, write)
            .map(|_| ())
            .map_err(|f| f.into_reply()),
        Operation::Search { checks, .. }
        | Operation::Count { checks, .. }
        | Operation::GroupDel { checks, .. }
        | Operation::SortedSearch { checks, .. } => validate_checks(schema, checks)
            .map(|_| ())
            .map_err(|f| f.into_reply()),
        Operation::GroupWrite { checks, funcs, .. } => {
            validate_checks(schema, checks).map_err(|f| f.into_reply())?;
            let w = KeyWrite {
                key: schema.key.datatype.default_value(),
                checks: Vec::new(),
                funcs: funcs.clone(),
                existence: Existence::MustExist,
                erase: false,
            };
            normalize_write(schema, &w)
                .map(|_| ())
                .map_err(|f| f.into_reply())
        }
        Operation::AddSpace(_) | Operation::RmSpace(_) => Err(Reply::Error(
            ReturnCode::Internal,
            "spaces are added and removed through the admin client".into(),
        )),
    }
}
