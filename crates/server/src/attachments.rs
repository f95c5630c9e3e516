//! Files and images in chat, independent of HTTP. An upload streams into
//! a spool file under `DATA/attachments/tmp` (never whole in memory),
//! hashed and counted as it comes, refused the moment it passes the site's
//! limit; its type is decided from its first bytes (`infer`), never from
//! its name or a header; a JPEG loses its metadata segments (EXIF with its
//! GPS position, XMP, IPTC); the spool file is fsync'd and handed to the
//! store, which keeps the bytes content-addressed (a file on SQLite, chunk
//! rows on PostgreSQL) and then the row. A message takes uploads by id
//! (`Change::Message::attachments`), in its own transaction; until then
//! nobody downloads them, and after [`ORPHAN_AFTER_MS`] the cleanup drops
//! them. Downloads go through short-lived signed links, issued to whoever
//! may see the conversation.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

use crate::auth::tokens::Tokens;
use crate::chat::service::{Chat, Peer};
use crate::error::{Error, Result};
use crate::store::attachments::{Attachment, AttachmentRef, ByteStream};
use crate::store::{Author, Store, new_id, now_ms};

/// The types shown inline: raster images a browser decodes as images and
/// nothing else. SVG, HTML and everything else are downloads.
pub const INLINE_TYPES: &[&str] = &["image/png", "image/jpeg", "image/gif", "image/webp"];
/// A site's default largest file.
pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// The largest file any site may allow.
pub const MAX_MAX_BYTES: u64 = 100 * 1024 * 1024;
/// Most attachments on one message.
pub const MAX_PER_MESSAGE: usize = 10;
/// How long a signed download link works.
pub const LINK_TTL_S: u64 = 300;
/// Uploads no message took by then are dropped.
pub const ORPHAN_AFTER_MS: i64 = 24 * 60 * 60 * 1000;
/// Uploads streaming at once on a node; more wait for none and get a 503.
const CONCURRENT_UPLOADS: usize = 64;
/// Most bytes of one upload on their way to the spool file at a time.
const SPOOL_WRITE: usize = 64 * 1024;
/// Bytes kept to decide the type.
const HEAD: usize = 8192;
/// Longest file name kept, in characters.
const MAX_NAME_CHARS: usize = 200;

/// What a site lets visitors and agents attach (`WidgetSettings::attachments`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AttachmentLimits {
    /// Largest file, in bytes (1 to 100 MB).
    pub max_bytes: u64,
    /// Types allowed, as `type/subtype` or `type/*`, matched against the
    /// type sniffed from the bytes; empty allows any.
    pub types: Vec<String>,
}

impl Default for AttachmentLimits {
    fn default() -> Self {
        AttachmentLimits { max_bytes: DEFAULT_MAX_BYTES, types: Vec::new() }
    }
}

impl AttachmentLimits {
    pub fn validated(mut self) -> Result<AttachmentLimits> {
        if !(1..=MAX_MAX_BYTES).contains(&self.max_bytes) {
            return Err(Error::bad_request(format!("attachments.max_bytes must be 1 to {MAX_MAX_BYTES}")));
        }
        if self.types.len() > 50 {
            return Err(Error::bad_request("at most 50 attachment types"));
        }
        for t in &mut self.types {
            *t = t.trim().to_ascii_lowercase();
            let valid = t.len() <= 100
                && t.split_once('/').is_some_and(|(a, b)| {
                    let token =
                        |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
                    token(a) && (b == "*" || token(b))
                });
            if !valid {
                return Err(Error::bad_request(format!("{t:?} is not a type like image/png or image/*")));
            }
        }
        Ok(self)
    }

    /// Whether a file of this (sniffed) type may be attached.
    pub fn allows(&self, content_type: &str) -> bool {
        self.types.is_empty()
            || self.types.iter().any(|t| match t.strip_suffix("/*") {
                Some(family) => content_type.split('/').next() == Some(family),
                None => t == content_type,
            })
    }
}

/// The type of a file from its first bytes: `infer`'s magic numbers, then
/// a look at text, which has none (an SVG or HTML file without a
/// declaration must not pass for plain text).
pub fn sniff(head: &[u8]) -> &'static str {
    if let Some(kind) = infer::get(head) {
        return kind.mime_type();
    }
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        // A character cut at the end of the head is still text.
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or(""),
        Err(_) => return "application/octet-stream",
    };
    let lower = text.to_ascii_lowercase();
    if lower.contains("<svg") {
        "image/svg+xml"
    } else if ["<html", "<!doctype html", "<script", "<body", "<iframe"].iter().any(|m| lower.contains(m)) {
        "text/html"
    } else {
        "text/plain"
    }
}

pub fn is_inline(content_type: &str) -> bool {
    INLINE_TYPES.contains(&content_type)
}

/// A file name safe to show and to offer in `Content-Disposition`: its last
/// path component, without control, bidi-override or zero-width
/// characters, without characters Windows refuses, not a reserved device
/// name, at most 200 characters. Never used as a path.
pub fn sanitize_name(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).find(|p| !p.trim().is_empty()).unwrap_or("");
    let cleaned: String = last
        .chars()
        .filter(|c| {
            !c.is_control()
                && !matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
                    | '\u{061C}' | '\u{FEFF}')
        })
        .map(|c| if "<>:\"|?*".contains(c) { '_' } else { c })
        .collect();
    let mut name = cleaned.trim_matches(|c: char| c.is_whitespace() || c == '.').to_owned();
    let stem = name.split('.').next().unwrap_or("").trim().to_ascii_uppercase();
    let reserved = matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || (stem.len() == 4
            && (stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.as_bytes()[3].is_ascii_digit());
    if reserved {
        name.insert(0, '_');
    }
    if name.chars().count() > MAX_NAME_CHARS {
        let ext = name.rsplit_once('.').map(|(_, e)| e).filter(|e| e.chars().count() <= 16).unwrap_or("");
        let keep = MAX_NAME_CHARS - ext.chars().count() - 1;
        let stem: String = name.chars().take(keep).collect();
        name = if ext.is_empty() { stem } else { format!("{stem}.{ext}") };
    }
    if name.is_empty() { "file".into() } else { name }
}

/// A spool file that is removed unless the store took it.
struct Spool {
    path: PathBuf,
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A writer that hashes and counts what passes through.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    size: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Copy a JPEG without its metadata segments: APP1 (EXIF, where the GPS
/// position is, and XMP) and APP13 (IPTC). Streams: only one segment (at
/// most 64 KiB) is held at a time; everything from the scan on is copied
/// as it is. Returns the copy's SHA-256 and size.
fn strip_jpeg_metadata(from: &Path, to: &Path) -> std::io::Result<(String, u64)> {
    let mut r = BufReader::new(std::fs::File::open(from)?);
    let mut w = Hashing { inner: BufWriter::new(std::fs::File::create(to)?), hash: Sha256::new(), size: 0 };
    copy_jpeg_without_metadata(&mut r, &mut w)?;
    w.flush()?;
    let Hashing { inner, hash, size } = w;
    inner.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok((hex::encode(hash.finalize()), size))
}

/// A JPEG held in memory (an agent's photo), without its metadata
/// segments, as [`strip_jpeg_metadata`] copies a file.
pub fn jpeg_without_metadata(jpeg: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(jpeg.len());
    copy_jpeg_without_metadata(&mut &*jpeg, &mut out)?;
    Ok(out)
}

/// The copy itself: markers and segments from `r` to `w`, APP1 and APP13
/// left out.
fn copy_jpeg_without_metadata(r: &mut impl Read, w: &mut impl Write) -> std::io::Result<()> {
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not a well-formed JPEG");
    let mut two = [0u8; 2];
    r.read_exact(&mut two)?;
    if two != [0xFF, 0xD8] {
        return Err(bad());
    }
    w.write_all(&two)?;
    loop {
        let mut byte = [0u8; 1];
        r.read_exact(&mut byte)?;
        if byte[0] != 0xFF {
            return Err(bad());
        }
        // Fill bytes (0xFF) may pad before a marker.
        let mut marker = 0xFF;
        while marker == 0xFF {
            r.read_exact(&mut byte)?;
            marker = byte[0];
        }
        if marker == 0xD9 || (0xD0..=0xD7).contains(&marker) || marker == 0x01 {
            w.write_all(&[0xFF, marker])?;
            if marker == 0xD9 {
                break;
            }
            continue;
        }
        r.read_exact(&mut two)?;
        let len = u16::from_be_bytes(two) as usize;
        if len < 2 {
            return Err(bad());
        }
        let mut segment = vec![0u8; len - 2];
        r.read_exact(&mut segment)?;
        if marker != 0xE1 && marker != 0xED {
            w.write_all(&[0xFF, marker])?;
            w.write_all(&two)?;
            w.write_all(&segment)?;
        }
        if marker == 0xDA {
            // Start of scan: the rest is image data (and what follows it).
            std::io::copy(r, w)?;
            break;
        }
    }
    Ok(())
}

/// What an upload asks for.
pub struct Upload<'a> {
    pub site_id: &'a str,
    pub uploader: Author,
    /// The name the client gave, sanitised here.
    pub name: &'a str,
    /// `Content-Length`, when the client sent one: refused at once when it
    /// is over the limit.
    pub declared: Option<u64>,
}

pub struct Attachments {
    store: Arc<dyn Store>,
    tokens: Tokens,
    /// `DATA/attachments/tmp`: on the data dir's file system, so a spool
    /// file is moved into place, never copied.
    spool_dir: PathBuf,
    uploads: Arc<Semaphore>,
}

impl Attachments {
    /// The attachments of a node whose data directory is `data_dir`. A
    /// spool file there now is an upload that a stopped or killed process
    /// left half-written (no upload of this one has begun, and a data
    /// directory serves one process): it is removed at once.
    pub fn new(store: Arc<dyn Store>, tokens: Tokens, data_dir: &Path) -> Result<Attachments> {
        let spool_dir = data_dir.join("attachments").join("tmp");
        std::fs::create_dir_all(&spool_dir).map_err(Error::internal)?;
        let me = Attachments { store, tokens, spool_dir, uploads: Arc::new(Semaphore::new(CONCURRENT_UPLOADS)) };
        let left = me.drop_spool_files(|_| true);
        if left > 0 {
            tracing::info!(files = left, "removed uploads a previous process left unfinished");
        }
        Ok(me)
    }

    /// The site's limits.
    pub async fn limits(&self, site_id: &str) -> Result<AttachmentLimits> {
        let site = self.store.site(site_id).await?.ok_or(Error::NotFound("site"))?;
        Ok(crate::admin::WidgetSettings::from_stored(&site.settings).attachments)
    }

    /// Stream an upload into the store; what a message will carry.
    pub async fn upload<S, E>(&self, upload: Upload<'_>, mut body: S) -> Result<AttachmentRef>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let limits = self.limits(upload.site_id).await?;
        let too_large = || {
            Error::TooLarge(format!("the file is larger than this site's limit of {} bytes", limits.max_bytes).into())
        };
        if upload.declared.is_some_and(|n| n > limits.max_bytes) {
            return Err(too_large());
        }
        let _permit = self.uploads.clone().try_acquire_owned().map_err(|_| Error::Unavailable(2))?;
        let spool = Spool { path: self.spool_dir.join(new_id()) };
        let mut file = tokio::fs::File::create(&spool.path).await.map_err(Error::internal)?;
        // tokio copies each write into a buffer of its own (2 MiB by
        // default) for the blocking pool: keep what one upload holds small.
        file.set_max_buf_size(SPOOL_WRITE);
        let (mut hash, mut size, mut head) = (Sha256::new(), 0u64, Vec::with_capacity(HEAD));
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| Error::bad_request(format!("the upload broke off: {e}")))?;
            size += chunk.len() as u64;
            if size > limits.max_bytes {
                return Err(too_large());
            }
            if head.len() < HEAD {
                head.extend_from_slice(&chunk[..chunk.len().min(HEAD - head.len())]);
            }
            hash.update(&chunk);
            file.write_all(&chunk).await.map_err(Error::internal)?;
        }
        if size == 0 {
            return Err(Error::bad_request("the file is empty"));
        }
        let content_type = sniff(&head);
        if !limits.allows(content_type) {
            return Err(Error::Unsupported(format!("files of type {content_type} are not allowed here").into()));
        }
        let (spool, sha256, size) = if content_type == "image/jpeg" {
            drop(file);
            let stripped = Spool { path: self.spool_dir.join(new_id()) };
            let (from, to) = (spool.path.clone(), stripped.path.clone());
            let (sha, size) = tokio::task::spawn_blocking(move || strip_jpeg_metadata(&from, &to))
                .await
                .map_err(Error::internal)?
                .map_err(|_| Error::bad_request("the JPEG image is damaged"))?;
            (stripped, sha, size)
        } else {
            file.sync_all().await.map_err(Error::internal)?;
            (spool, hex::encode(hash.finalize()), size)
        };
        let attachment = Attachment {
            id: new_id(),
            site_id: upload.site_id.to_owned(),
            uploader: upload.uploader,
            conversation_id: None,
            sha256,
            size: size as i64,
            content_type: content_type.to_owned(),
            name: sanitize_name(upload.name),
            created_at: now_ms(),
        };
        self.store.put_attachment(attachment.clone(), &spool.path).await?;
        Ok(reference(&attachment))
    }

    /// The attachment if `peer` may download it: a message of a
    /// conversation they may see took it. Anything else is "not found".
    pub async fn visible(&self, chat: &Chat, peer: &Peer, id: &str) -> Result<Attachment> {
        let found = if id.len() > 64 { None } else { self.store.attachment(id).await? };
        let attachment = found.filter(|a| a.site_id == peer.site_id()).ok_or(Error::NotFound("attachment"))?;
        let conv = attachment.conversation_id.as_deref().ok_or(Error::NotFound("attachment"))?;
        chat.conversation_for(peer, conv).await.map_err(|_| Error::NotFound("attachment"))?;
        Ok(attachment)
    }

    /// A signed link's token for an attachment `peer` may see, and when it
    /// expires (ms).
    pub async fn link(&self, chat: &Chat, peer: &Peer, id: &str) -> Result<(Attachment, String, i64)> {
        let attachment = self.visible(chat, peer, id).await?;
        let expires_at = now_ms() + LINK_TTL_S as i64 * 1000;
        let token = self.tokens.issue_attachment(&attachment.id, expires_at)?;
        Ok((attachment, token, expires_at))
    }

    /// The attachment a link's token names, with its bytes.
    pub async fn open(&self, id: &str, token: &str) -> Result<(Attachment, ByteStream)> {
        if self.tokens.verify_attachment(token).as_deref() != Some(id) {
            return Err(Error::Forbidden("this link is invalid or has expired".into()));
        }
        // Still in its conversation (an erasure takes it out at once).
        let found = self.store.attachment(id).await?.filter(|a| a.conversation_id.is_some());
        let attachment = found.ok_or(Error::NotFound("attachment"))?;
        let bytes = self.store.attachment_bytes(&attachment.sha256).await?;
        Ok((attachment, bytes))
    }

    /// Drop orphans and spool files a crash left, every 10 minutes, while
    /// the server's state lives.
    pub fn spawn_cleanup(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
            loop {
                tick.tick().await;
                let Some(me) = me.upgrade() else { return };
                me.clean_up().await;
            }
        });
    }

    /// One round of the cleanup: orphans, then spool files left by hung
    /// uploads.
    pub async fn clean_up(&self) {
        match self.store.drop_orphan_attachments(now_ms() - ORPHAN_AFTER_MS).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(dropped = n, "dropped uploads no message took"),
            Err(err) => tracing::warn!(error = %err, "cannot drop orphaned uploads"),
        }
        self.drop_stale_spool();
    }

    /// Spool files untouched for an hour: uploads whose connection hung.
    fn drop_stale_spool(&self) {
        self.drop_spool_files(|m| m.modified().is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() > 3600)));
    }

    /// Remove the spool files whose metadata `stale` picks; how many.
    fn drop_spool_files(&self, stale: impl Fn(&std::fs::Metadata) -> bool) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.spool_dir) else { return 0 };
        let mut dropped = 0;
        for entry in entries.flatten() {
            if entry.metadata().is_ok_and(|m| m.is_file() && stale(&m)) && std::fs::remove_file(entry.path()).is_ok() {
                dropped += 1;
            }
        }
        dropped
    }
}

/// What a message carries of an attachment.
pub fn reference(a: &Attachment) -> AttachmentRef {
    AttachmentRef {
        id: a.id.clone(),
        name: a.name.clone(),
        size: a.size,
        content_type: a.content_type.clone(),
        inline: is_inline(&a.content_type),
    }
}

/// The uploads a message of `author` names, as the message will carry
/// them: each of the author's own, in their site. Another's upload is
/// "not found", like a missing one.
pub async fn refs_for(store: &dyn Store, site_id: &str, author: &Author, ids: &[String]) -> Result<Vec<AttachmentRef>> {
    if ids.len() > MAX_PER_MESSAGE {
        return Err(Error::bad_request(format!("at most {MAX_PER_MESSAGE} attachments on a message")));
    }
    let mut refs = Vec::with_capacity(ids.len());
    for id in ids {
        let found = if id.len() > 64 { None } else { store.attachment(id).await? };
        let a = found.filter(|a| a.site_id == site_id && a.uploader == *author).ok_or(Error::NotFound("attachment"))?;
        if !refs.iter().any(|r: &AttachmentRef| r.id == a.id) {
            refs.push(reference(&a));
        }
    }
    Ok(refs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_paths_controls_bidi_and_reserved_words() {
        assert_eq!(sanitize_name("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_name("C:\\Users\\x\\report.pdf"), "report.pdf");
        assert_eq!(sanitize_name("invoice\u{202E}fdp.exe"), "invoicefdp.exe");
        assert_eq!(sanitize_name("a\u{0}b\nc.txt"), "abc.txt");
        assert_eq!(sanitize_name("CON.txt"), "_CON.txt");
        assert_eq!(sanitize_name("lpt1"), "_lpt1");
        assert_eq!(sanitize_name("<script>.png"), "_script_.png");
        assert_eq!(sanitize_name(".."), "file");
        assert_eq!(sanitize_name("   "), "file");
        let long = format!("{}.pdf", "x".repeat(500));
        let kept = sanitize_name(&long);
        assert_eq!(kept.chars().count(), 200);
        assert!(kept.ends_with(".pdf"));
    }

    #[test]
    fn types_come_from_the_bytes() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), "image/png");
        assert_eq!(sniff(b"<html><script>alert(1)</script>"), "text/html");
        assert_eq!(sniff(b"<svg xmlns='http://www.w3.org/2000/svg'><script/></svg>"), "image/svg+xml");
        assert_eq!(sniff(b"just words"), "text/plain");
        assert_eq!(sniff(&[0, 159, 146, 150]), "application/octet-stream");
        assert!(is_inline("image/png") && !is_inline("image/svg+xml"));
    }

    #[test]
    fn limits_match_families_and_exact_types() {
        let l = AttachmentLimits { max_bytes: 10, types: vec!["image/*".into(), "application/pdf".into()] };
        let l = l.validated().unwrap();
        assert!(l.allows("image/png") && l.allows("application/pdf"));
        assert!(!l.allows("text/html"));
        assert!(AttachmentLimits::default().allows("text/html"));
        assert!(AttachmentLimits { max_bytes: 0, types: vec![] }.validated().is_err());
        assert!(AttachmentLimits { max_bytes: 1, types: vec!["nope".into()] }.validated().is_err());
    }
}
