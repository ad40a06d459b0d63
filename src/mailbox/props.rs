//! Property bags: named, typed values on a folder or a message, in the ESE
//! style of tagged columns. Key: owner kind (1 folder, 2 message), folder
//! id, the UID for a message, then the name. Value: a type tag, then the
//! payload (DESIGN.md).

use super::codec::Decoder;
use super::error::{MailError, Result};
use super::query::{self, FolderRef};
use super::schema::{self, MAX_PROP_NAME, MAX_PROP_VALUE, Schema};
use super::types::{PropOwner, PropValue};
use crate::btree;
use crate::pager::PageRead;

/// The key prefix of an owner's bag.
pub(crate) fn owner_prefix(folder_id: u64, owner: PropOwner) -> Vec<u8> {
    let mut k = Vec::with_capacity(13);
    match owner {
        PropOwner::Folder => {
            k.push(1);
            k.extend_from_slice(&folder_id.to_be_bytes());
        }
        PropOwner::Message(uid) => {
            k.push(2);
            k.extend_from_slice(&folder_id.to_be_bytes());
            k.extend_from_slice(&uid.to_be_bytes());
        }
    }
    k
}

pub(crate) fn key(folder_id: u64, owner: PropOwner, name: &str) -> Result<Vec<u8>> {
    schema::check_text("property", name, MAX_PROP_NAME)?;
    let mut k = owner_prefix(folder_id, owner);
    k.extend_from_slice(name.as_bytes());
    Ok(k)
}

pub(crate) fn encode(v: &PropValue) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    match v {
        PropValue::Bool(b) => out.extend_from_slice(&[1, u8::from(*b)]),
        PropValue::I64(x) => {
            out.push(2);
            out.extend_from_slice(&x.to_le_bytes());
        }
        PropValue::U64(x) => {
            out.push(3);
            out.extend_from_slice(&x.to_le_bytes());
        }
        PropValue::F64(x) => {
            out.push(4);
            out.extend_from_slice(&x.to_bits().to_le_bytes());
        }
        PropValue::Time(x) => {
            out.push(5);
            out.extend_from_slice(&x.to_le_bytes());
        }
        PropValue::Text(s) => {
            out.push(6);
            out.extend_from_slice(s.as_bytes());
        }
        PropValue::Binary(b) => {
            out.push(7);
            out.extend_from_slice(b);
        }
    }
    if out.len() - 1 > MAX_PROP_VALUE {
        return Err(MailError::InvalidArgument(format!(
            "property value of {} bytes exceeds the maximum of {MAX_PROP_VALUE}",
            out.len() - 1
        )));
    }
    Ok(out)
}

pub(crate) fn decode(bytes: &[u8]) -> Result<PropValue, String> {
    let mut d = Decoder::new(bytes);
    let tag = d.u8()?;
    let v = match tag {
        1 => match d.u8()? {
            0 => PropValue::Bool(false),
            1 => PropValue::Bool(true),
            b => return Err(format!("boolean byte {b}")),
        },
        2 => PropValue::I64(d.i64()?),
        3 => PropValue::U64(d.u64()?),
        4 => PropValue::F64(f64::from_bits(d.u64()?)),
        5 => PropValue::Time(d.i64()?),
        6 => PropValue::Text(String::from_utf8(d.rest().to_vec()).map_err(|_| "text is not UTF-8")?),
        7 => PropValue::Binary(d.rest().to_vec()),
        t => return Err(format!("property type {t}")),
    };
    d.finish()?;
    Ok(v)
}

fn check_owner<S: PageRead + ?Sized>(s: &S, sc: &Schema, f: &FolderRef, owner: PropOwner) -> Result<()> {
    if let PropOwner::Message(uid) = owner
        && query::message(s, sc, f.rec.id, uid)?.is_none()
    {
        return Err(MailError::NoSuchMessage {
            folder: f.name.clone(),
            uid,
        });
    }
    Ok(())
}

pub(crate) fn get<S: PageRead + ?Sized>(
    s: &S,
    sc: &Schema,
    f: &FolderRef,
    owner: PropOwner,
    name: &str,
) -> Result<Option<PropValue>> {
    check_owner(s, sc, f, owner)?;
    let key = key(f.rec.id, owner, name)?;
    match btree::get_bytes(s, sc.props.root(), &key)? {
        Some(b) => Ok(Some(decode(&b).map_err(|e| sc.corrupt(schema::PROPS, &key, e))?)),
        None => Ok(None),
    }
}

pub(crate) fn list<S: PageRead + ?Sized>(
    s: &S,
    sc: &Schema,
    f: &FolderRef,
    owner: PropOwner,
) -> Result<Vec<(String, PropValue)>> {
    check_owner(s, sc, f, owner)?;
    let prefix = owner_prefix(f.rec.id, owner);
    let mut out = Vec::new();
    for entry in query::scan(s, sc.props.root(), &prefix)? {
        let (key, value) = entry?;
        let value = match value {
            btree::Value::Inline(b) => b,
            btree::Value::Long(l) => btree::read_value(s, &btree::Value::Long(l))?,
        };
        let name = String::from_utf8(key[prefix.len()..].to_vec())
            .map_err(|_| sc.corrupt(schema::PROPS, &key, "name is not UTF-8".into()))?;
        out.push((name, decode(&value).map_err(|e| sc.corrupt(schema::PROPS, &key, e))?));
    }
    Ok(out)
}
