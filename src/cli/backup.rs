//! `hyperdex backup DIR` and `hyperdex restore DIR`.
//!
//! A backup is consistent: the cluster is switched to read-only mode first (in force on every
//! daemon when the call returns), so the only writes that can still complete while the
//! regions are read are those already in flight, none of which any later write can depend on;
//! every write acknowledged before is in the backup. Read-only mode is switched off at the end
//! (unless it was on before). Each space is read a page at a time through the region heads and
//! streamed to its file, so memory does not grow with the data.
//!
//! Layout of DIR: `MANIFEST` (`hyperdex-rs backup 1`, `configuration VERSION`, then one line
//! `space NAME OBJECTS` per space), and per space `NAME.space` (its description) and
//! `NAME.objects` (each object, key included, as a 4-byte little-endian length and its
//! postcard encoding).
//!
//! A space `with authorization` is skipped (named in the manifest as such): its objects are
//! read only with their macaroons, and a search, which a backup is, would bypass them.
//!
//! A restore adds each space (refused if a space of that name exists), writes its objects
//! with 256 outstanding, and checks that the space then counts as many objects as the backup.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use hyperdex_model::{parse_space, Object, Operation, Reply};

use crate::admin::Admin;
use crate::client::Client;

const MAGIC: &str = "hyperdex-rs backup 1";
/// The largest object a backup file may hold (a frame's limit).
const MAX_RECORD: usize = 16 << 20;

fn io(path: &Path, e: impl std::fmt::Display) -> String {
    format!("{}: {e}", path.display())
}

/// Writes a consistent backup of every space to `dir` (created; it must be empty or new).
/// Returns what it wrote, one line per space.
pub async fn backup(admin: &Admin, client: &Client, dir: &Path) -> Result<String, String> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    if std::fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .next()
        .is_some()
    {
        return Err(format!("{} is not empty", dir.display()));
    }
    let was_read_only = admin.config().await.map_err(|e| e.to_string())?.read_only;
    let result = match admin.read_only(true).await {
        Ok(()) => write_spaces(admin, client, dir).await,
        // It may have been applied all the same: it is switched off below.
        Err(e) => Err(format!("cannot switch read-only mode on: {e}")),
    };
    // Someone switched it off meanwhile (an operator, another backup ending): writes may have
    // been accepted while the spaces were read.
    let result = match (result, admin.config().await) {
        (Ok(_), Ok(c)) if !c.read_only => Err(
            "read-only mode was switched off while the spaces were read: the backup may be \
             inconsistent; make it again"
                .to_string(),
        ),
        (r, _) => r,
    };
    if !was_read_only {
        if let Err(e) = admin.read_only(false).await {
            return Err(format!(
                "the backup {}, but read-only mode could not be switched off: {e} \
                 (run hyperdex set-read-write)",
                if result.is_ok() {
                    "is complete"
                } else {
                    "failed"
                }
            ));
        }
    }
    result
}

async fn write_spaces(admin: &Admin, client: &Client, dir: &Path) -> Result<String, String> {
    let config = admin.config().await.map_err(|e| e.to_string())?;
    let mut manifest = format!("{MAGIC}\nconfiguration {}\n", config.version);
    for (name, space) in &config.spaces {
        if space.schema.authorization {
            // Its objects can be read only with their macaroons, not by a search.
            manifest += &format!("# space {name} skipped: it has authorization\n");
            continue;
        }
        let schema_path = dir.join(format!("{name}.space"));
        write_synced(&schema_path, space.schema.to_string().as_bytes())?;
        let path = dir.join(format!("{name}.objects"));
        let mut out = BufWriter::new(File::create(&path).map_err(|e| io(&path, e))?);
        let mut stream = client.search_stream(name, &[], false);
        let mut n = 0u64;
        while let Some(page) = stream.next_page().await {
            let page = page.map_err(|e| format!("reading space \"{name}\": {e}"))?;
            for object in &page.objects {
                let bytes = postcard::to_allocvec(object).map_err(|e| io(&path, e))?;
                out.write_all(&(bytes.len() as u32).to_le_bytes())
                    .and_then(|()| out.write_all(&bytes))
                    .map_err(|e| io(&path, e))?;
                n += 1;
            }
        }
        out.into_inner()
            .map_err(|e| io(&path, e.error()))?
            .sync_all()
            .map_err(|e| io(&path, e))?;
        manifest += &format!("space {name} {n}\n");
    }
    let path = dir.join("MANIFEST");
    write_synced(&path, manifest.as_bytes())?;
    // The directory's entries too, so a backup reported complete survives a crash.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))?;
    Ok(manifest)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut f = File::create(path).map_err(|e| io(path, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| io(path, e))
}

/// The next object of a backup file, `None` at its end.
fn next_object(input: &mut impl Read, path: &Path) -> Result<Option<Object>, String> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(io(path, e)),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_RECORD {
        return Err(io(
            path,
            format!("a record of {len} bytes: not a backup file"),
        ));
    }
    let mut bytes = vec![0u8; len];
    input.read_exact(&mut bytes).map_err(|e| io(path, e))?;
    postcard::from_bytes(&bytes)
        .map(Some)
        .map_err(|e| io(path, format!("unreadable object: {e}")))
}

/// Loads the backup in `dir` into the cluster: every space it holds is added and filled.
pub async fn restore(admin: &Admin, client: &Client, dir: &Path) -> Result<String, String> {
    let path = dir.join("MANIFEST");
    let manifest = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
    let mut lines = manifest.lines();
    if lines.next() != Some(MAGIC) {
        return Err(io(&path, "not a hyperdex-rs backup"));
    }
    let spaces: Vec<(String, u64)> = lines
        .filter_map(|l| l.strip_prefix("space "))
        .map(|l| {
            let (name, n) = l.rsplit_once(' ').ok_or_else(|| io(&path, "bad line"))?;
            Ok((name.to_string(), n.parse().map_err(|e| io(&path, e))?))
        })
        .collect::<Result<_, String>>()?;
    if let Some((name, _)) = spaces
        .iter()
        .find(|(n, _)| n.is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        return Err(io(&path, format!("\"{name}\" is not a space name")));
    }
    let existing = admin.list_spaces().await.map_err(|e| e.to_string())?;
    if let Some((name, _)) = spaces.iter().find(|(n, _)| existing.contains(n)) {
        return Err(format!("space \"{name}\" already exists in the cluster"));
    }
    let mut report = String::new();
    for (name, expected) in spaces {
        let schema_path = dir.join(format!("{name}.space"));
        let text = std::fs::read_to_string(&schema_path).map_err(|e| io(&schema_path, e))?;
        let schema = parse_space(&text).map_err(|e| io(&schema_path, e))?;
        admin.add_space(&text).await.map_err(|e| e.to_string())?;
        admin
            .wait_until_stable(std::time::Duration::from_secs(60))
            .await
            .map_err(|e| e.to_string())?;
        let path = dir.join(format!("{name}.objects"));
        let mut input = BufReader::new(File::open(&path).map_err(|e| io(&path, e))?);
        // At most 256 writes or about 64 MiB of objects in flight.
        let (mut outstanding, mut in_flight) = (0usize, std::collections::VecDeque::new());
        while let Some(mut object) = next_object(&mut input, &path)? {
            let key = object
                .remove(&schema.key.name)
                .ok_or_else(|| io(&path, "an object without its key"))?;
            let attrs = object
                .iter()
                .map(|(a, v)| (a.as_str(), v.clone()))
                .collect();
            let size = postcard::to_allocvec(&object).map_or(0, |b| b.len());
            client.start(Operation::put(&name, key, attrs));
            in_flight.push_back(size);
            outstanding += size;
            while in_flight.len() >= 256 || outstanding > 64 << 20 {
                check(client.loop_next().await.map(|(_, r)| r), &name)?;
                outstanding -= in_flight.pop_front().unwrap_or(0);
            }
        }
        while let Some((_, reply)) = client.loop_next().await {
            check(Some(reply), &name)?;
        }
        let n = client
            .count_all(&name, &[])
            .await
            .map_err(|e| e.to_string())?;
        if n != expected {
            return Err(format!(
                "space \"{name}\" counts {n} objects after the restore, the backup has {expected}"
            ));
        }
        report += &format!("space {name} {n}\n");
    }
    Ok(report)
}

fn check(reply: Option<Reply>, space: &str) -> Result<(), String> {
    match reply {
        Some(Reply::Success) | None => Ok(()),
        Some(other) => Err(format!("restoring space \"{space}\": {other:?}")),
    }
}
