//! Attachments (migrations `sqlite/0022_attachments.sql`,
//! `postgres/0015_attachments.sql`): the rows, the bytes, and the binding
//! of uploads to the message that carries them. The rules (what a name
//! may be, which types show inline, who may download) are written once in
//! `crate::attachments`; this file holds the record, the SQL of both
//! backends (one text each, `$n` parameters that SQLite reads as `?n`) and
//! where the bytes live: on SQLite a file under `DATA/attachments/` named
//! by its SHA-256, on PostgreSQL chunks in `attachment_chunks`, so every
//! node of a cluster serves every file.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{Acquire, Row as _};
use tokio::io::AsyncReadExt;

use super::lite;
use super::postgres::PostgresStore;
use super::sqlite::SqliteStore;
use super::{Author, AuthorKind};
use crate::error::{Error, Result};

/// One upload as stored. `conversation_id` is set by the message that
/// takes it; until then nobody can download it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub id: String,
    pub site_id: String,
    /// Who uploaded it: only they can put it in a message.
    pub uploader: Author,
    pub conversation_id: Option<String>,
    /// Hex SHA-256 of the stored bytes (after metadata stripping): where
    /// the bytes are.
    pub sha256: String,
    pub size: i64,
    /// Decided from the bytes, never from the name or a header.
    pub content_type: String,
    /// Sanitised (`attachments::sanitize_name`); never used as a path.
    pub name: String,
    pub created_at: i64,
}

/// An attachment as a message event carries it (`data.attachments`), and
/// as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttachmentRef {
    pub id: String,
    pub name: String,
    pub size: i64,
    #[serde(rename = "type")]
    pub content_type: String,
    /// A raster image (PNG, JPEG, GIF, WebP) the clients may show inline.
    pub inline: bool,
}

/// The bytes of a file, read a chunk at a time.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// Bytes per chunk, in files read back and in PostgreSQL rows.
pub const CHUNK: usize = 256 * 1024;

const INSERT: &str = "INSERT INTO attachments (id, site_id, uploader_kind, uploader_id, conversation_id, sha256, \
                      size, content_type, name, created_at) VALUES ($1, $2, $3, $4, NULL, $5, $6, $7, $8, $9)";
const ONE: &str = "SELECT * FROM attachments WHERE id = $1";
const BOUND_TO: &str = "SELECT conversation_id FROM attachments WHERE id = $1";
const BOUND_TO_LOCKED: &str = "SELECT conversation_id FROM attachments WHERE id = $1 FOR UPDATE";
const BIND: &str = "UPDATE attachments SET conversation_id = $1 WHERE id = $2 AND conversation_id IS NULL";
const ORPHANS: &str = "SELECT id, sha256 FROM attachments WHERE conversation_id IS NULL AND created_at < $1 LIMIT 500";
const DROP_ONE: &str = "DELETE FROM attachments WHERE id = $1 AND conversation_id IS NULL";
const NAMED: &str = "SELECT count(*) FROM attachments WHERE sha256 = $1";
const OTHERS: &str = "SELECT count(*) FROM attachments WHERE sha256 = $1 AND id <> $2";
/// An erased visitor's files: taken from their conversations and made
/// orphans at once, for the next cleanup to delete with their bytes.
pub(super) const ERASE: &str = "UPDATE attachments SET conversation_id = NULL, created_at = 0 WHERE conversation_id IN \
                                (SELECT id FROM conversations WHERE visitor_id = $1 AND site_id = $2)";

macro_rules! attachment_from {
    ($r:expr, $get:ident) => {{
        let kind: String = $r.$get("uploader_kind")?;
        Attachment {
            id: $r.$get("id")?,
            site_id: $r.$get("site_id")?,
            uploader: Author {
                kind: AuthorKind::parse(&kind).unwrap_or(AuthorKind::System),
                id: $r.$get("uploader_id")?,
            },
            conversation_id: $r.$get("conversation_id")?,
            sha256: $r.$get("sha256")?,
            size: $r.$get("size")?,
            content_type: $r.$get("content_type")?,
            name: $r.$get("name")?,
            created_at: $r.$get("created_at")?,
        }
    }};
}

fn sqlite_attachment(r: &Row) -> rusqlite::Result<Attachment> {
    Ok(attachment_from!(r, get))
}

fn pg_attachment(r: &PgRow) -> Result<Attachment> {
    Ok(attachment_from!(r, try_get))
}

/// Why `refs` cannot go into a message of `conversation_id`, if they
/// cannot: an upload that is gone (cleaned up) or that another
/// conversation's message took. Checked before anything is written.
fn refusal(bound: &[Option<Option<String>>], conversation_id: &str) -> Option<Error> {
    bound.iter().find_map(|b| match b {
        None => Some(Error::NotFound("attachment")),
        Some(Some(other)) if other != conversation_id => {
            Some(Error::conflict("an attachment is already in another conversation"))
        }
        _ => None,
    })
}

/// Bind the uploads of a new message to its conversation, inside the
/// message's transaction (the SQLite writer's batch). Inner `Err`: refused,
/// nothing written.
pub(super) fn bind_sqlite(
    conn: &Connection,
    conversation_id: &str,
    refs: &[AttachmentRef],
) -> rusqlite::Result<Result<()>> {
    let mut bound = Vec::with_capacity(refs.len());
    for r in refs {
        bound.push(conn.prepare_cached(&lite(BOUND_TO))?.query_row([&r.id], |row| row.get(0)).optional()?);
    }
    if let Some(refused) = refusal(&bound, conversation_id) {
        return Ok(Err(refused));
    }
    for r in refs {
        conn.prepare_cached(&lite(BIND))?.execute(params![conversation_id, r.id])?;
    }
    Ok(Ok(()))
}

/// [`bind_sqlite`] on PostgreSQL, in the message's transaction (the rows
/// locked until it ends, so two messages cannot take one upload).
pub(super) async fn bind_pg(
    conn: &mut PgConnection,
    conversation_id: &str,
    refs: &[AttachmentRef],
) -> Result<Result<()>> {
    let mut bound = Vec::with_capacity(refs.len());
    for r in refs {
        let row: Option<Option<String>> =
            sqlx::query_scalar(BOUND_TO_LOCKED).bind(&r.id).fetch_optional(&mut *conn).await?;
        bound.push(row);
    }
    if let Some(refused) = refusal(&bound, conversation_id) {
        return Ok(Err(refused));
    }
    for r in refs {
        sqlx::query(BIND).bind(conversation_id).bind(&r.id).execute(&mut *conn).await?;
    }
    Ok(Ok(()))
}

/// The event data of a message with these attachments.
pub(super) fn message_data(refs: &[AttachmentRef], integration: Option<&str>) -> serde_json::Value {
    let mut data = serde_json::Map::new();
    if !refs.is_empty() {
        data.insert("attachments".into(), serde_json::json!(refs));
    }
    if let Some(name) = integration {
        data.insert("integration".into(), serde_json::json!(name));
    }
    serde_json::Value::Object(data)
}

/// A file read from `offset` on, a chunk at a time.
fn file_stream(path: PathBuf) -> ByteStream {
    stream::try_unfold(None::<tokio::fs::File>, move |file| {
        let path = path.clone();
        async move {
            let mut file = match file {
                Some(f) => f,
                None => tokio::fs::File::open(&path).await?,
            };
            let mut buf = vec![0u8; 64 * 1024];
            let n = file.read(&mut buf).await?;
            if n == 0 {
                return Ok(None);
            }
            buf.truncate(n);
            Ok(Some((Bytes::from(buf), Some(file))))
        }
    })
    .boxed()
}

/// Make a rename in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

impl SqliteStore {
    /// Where the bytes with this SHA-256 live: `DATA/attachments/ab/abcd…`.
    fn blob_path(&self, sha256: &str) -> Result<PathBuf> {
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::internal(anyhow::anyhow!("not a SHA-256: {sha256:?}")));
        }
        Ok(self.dir().join("attachments").join(&sha256[..2]).join(sha256))
    }

    pub(super) async fn attachment_put(&self, a: Attachment, spooled: &Path) -> Result<()> {
        // The spooled file is fsync'd; moving it over an earlier copy of the
        // same bytes gives the file a fresh time, so the cleanup (which
        // spares recent files) cannot remove it under this upload.
        let target = self.blob_path(&a.sha256)?;
        let spooled = spooled.to_owned();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let dir = target.parent().expect("a blob path has a parent");
            std::fs::create_dir_all(dir)?;
            std::fs::rename(&spooled, &target)?;
            sync_dir(dir)
        })
        .await
        .map_err(Error::internal)?
        .map_err(Error::internal)?;
        self.write(move |c| {
            c.prepare_cached(&lite(INSERT))?.execute(params![
                a.id,
                a.site_id,
                a.uploader.kind.as_str(),
                a.uploader.id,
                a.sha256,
                a.size,
                a.content_type,
                a.name,
                a.created_at
            ])?;
            Ok(())
        })
        .await
    }

    pub(super) async fn attachment_one(&self, id: &str) -> Result<Option<Attachment>> {
        let id = id.to_owned();
        self.read(move |c| Ok(c.prepare_cached(&lite(ONE))?.query_row([id], sqlite_attachment).optional()?)).await
    }

    pub(super) async fn attachment_read(&self, sha256: &str) -> Result<ByteStream> {
        let path = self.blob_path(sha256)?;
        tokio::fs::metadata(&path).await.map_err(Error::internal)?;
        Ok(file_stream(path))
    }

    pub(super) async fn attachment_orphans(&self, before: i64) -> Result<usize> {
        let orphans: Vec<(String, String)> = self
            .read(move |c| {
                let mut stmt = c.prepare_cached(&lite(ORPHANS))?;
                let rows = stmt.query_map([before], |r| Ok((r.get(0)?, r.get(1)?)))?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await?;
        // A file written in the last hour is spared (with its row, so the
        // next run tries again): an upload of the same bytes may be about
        // to add its row.
        let fresh = |path: &Path| {
            std::fs::metadata(path)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() < 3600))
        };
        let mut dropped = 0;
        for (id, sha256) in orphans {
            let path = self.blob_path(&sha256)?;
            let (one, sha) = (id.clone(), sha256.clone());
            let others: i64 =
                self.read(move |c| Ok(c.prepare_cached(&lite(OTHERS))?.query_row([sha, one], |r| r.get(0))?)).await?;
            if others == 0 && fresh(&path) {
                continue;
            }
            let gone = self.write(move |c| Ok(c.prepare_cached(&lite(DROP_ONE))?.execute([id])?)).await?;
            dropped += gone;
            if others == 0 && gone > 0 && !fresh(&path) {
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(dropped)
    }
}

impl PostgresStore {
    pub(super) async fn attachment_put(&self, a: Attachment, spooled: &Path) -> Result<()> {
        let mut conn = self.p().await?.acquire().await?;
        let mut tx = conn.begin().await?;
        // Uploads and the cleanup of the same bytes take turns.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))").bind(&a.sha256).execute(&mut *tx).await?;
        let present: Option<i32> =
            sqlx::query_scalar("SELECT idx FROM attachment_chunks WHERE sha256 = $1 AND idx = 0")
                .bind(&a.sha256)
                .fetch_optional(&mut *tx)
                .await?;
        if present.is_none() {
            let mut file = tokio::fs::File::open(spooled).await.map_err(Error::internal)?;
            let mut idx = 0i32;
            loop {
                let mut buf = Vec::with_capacity(CHUNK);
                let n = (&mut file).take(CHUNK as u64).read_to_end(&mut buf).await.map_err(Error::internal)?;
                if n == 0 && idx > 0 {
                    break;
                }
                sqlx::query("INSERT INTO attachment_chunks (sha256, idx, data) VALUES ($1, $2, $3)")
                    .bind(&a.sha256)
                    .bind(idx)
                    .bind(buf)
                    .execute(&mut *tx)
                    .await?;
                idx += 1;
                if n < CHUNK {
                    break;
                }
            }
        }
        sqlx::query(INSERT)
            .bind(&a.id)
            .bind(&a.site_id)
            .bind(a.uploader.kind.as_str())
            .bind(&a.uploader.id)
            .bind(&a.sha256)
            .bind(a.size)
            .bind(&a.content_type)
            .bind(&a.name)
            .bind(a.created_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let _ = tokio::fs::remove_file(spooled).await;
        Ok(())
    }

    pub(super) async fn attachment_one(&self, id: &str) -> Result<Option<Attachment>> {
        sqlx::query(ONE).bind(id).fetch_optional(self.p().await?).await?.map(|r| pg_attachment(&r)).transpose()
    }

    pub(super) async fn attachment_read(&self, sha256: &str) -> Result<ByteStream> {
        let pool = self.p().await?.clone();
        let sha256 = sha256.to_owned();
        Ok(stream::try_unfold(0i32, move |idx| {
            let (pool, sha256) = (pool.clone(), sha256.clone());
            async move {
                let chunk: Option<Vec<u8>> =
                    sqlx::query_scalar("SELECT data FROM attachment_chunks WHERE sha256 = $1 AND idx = $2")
                        .bind(&sha256)
                        .bind(idx)
                        .fetch_optional(&pool)
                        .await
                        .map_err(std::io::Error::other)?;
                Ok(chunk.filter(|c| !c.is_empty()).map(|c| (Bytes::from(c), idx + 1)))
            }
        })
        .boxed())
    }

    pub(super) async fn attachment_orphans(&self, before: i64) -> Result<usize> {
        let pool = self.p().await?;
        let orphans: Vec<(String, String)> = sqlx::query_as(ORPHANS).bind(before).fetch_all(pool).await?;
        let mut dropped = 0;
        for (id, sha256) in orphans {
            let mut tx = pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))").bind(&sha256).execute(&mut *tx).await?;
            dropped += sqlx::query(DROP_ONE).bind(&id).execute(&mut *tx).await?.rows_affected() as usize;
            let left: i64 = sqlx::query_scalar(NAMED).bind(&sha256).fetch_one(&mut *tx).await?;
            if left == 0 {
                sqlx::query("DELETE FROM attachment_chunks WHERE sha256 = $1").bind(&sha256).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        }
        Ok(dropped)
    }
}
