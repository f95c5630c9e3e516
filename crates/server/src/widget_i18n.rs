//! The widget's languages other than English: one JSON string table per
//! language (`assets/widget-i18n/LANG.json`, embedded), served apart from
//! `widget.js` (`http::assets`, `/widget-i18n/LANG.json`) and fetched by the
//! widget when its panel first opens, so a page that never opens the chat
//! loads none of them. English is built into `widget.js`; every table has
//! its keys (checked by `tests/it/web.rs`) plus `_dir` (`ltr` or `rtl`).

use std::collections::BTreeSet;
use std::sync::LazyLock;

/// Each shipped language (ISO 639-1, as `navigator.language` starts) and
/// its table.
pub const TABLES: &[(&str, &[u8])] = &[
    ("ar", include_bytes!("../../../assets/widget-i18n/ar.json")),
    ("de", include_bytes!("../../../assets/widget-i18n/de.json")),
    ("es", include_bytes!("../../../assets/widget-i18n/es.json")),
    ("fr", include_bytes!("../../../assets/widget-i18n/fr.json")),
    ("he", include_bytes!("../../../assets/widget-i18n/he.json")),
    ("it", include_bytes!("../../../assets/widget-i18n/it.json")),
    ("ja", include_bytes!("../../../assets/widget-i18n/ja.json")),
    ("nl", include_bytes!("../../../assets/widget-i18n/nl.json")),
    ("pl", include_bytes!("../../../assets/widget-i18n/pl.json")),
    ("pt", include_bytes!("../../../assets/widget-i18n/pt.json")),
    ("sv", include_bytes!("../../../assets/widget-i18n/sv.json")),
    ("tr", include_bytes!("../../../assets/widget-i18n/tr.json")),
    ("zh", include_bytes!("../../../assets/widget-i18n/zh.json")),
];

/// Whether the widget speaks `code` (English included).
pub fn ships(code: &str) -> bool {
    code == "en" || TABLES.iter().any(|(c, _)| *c == code)
}

/// The keys a site may override: those of the tables (all have the same).
pub fn keys() -> &'static BTreeSet<String> {
    static KEYS: LazyLock<BTreeSet<String>> = LazyLock::new(|| {
        let table: serde_json::Map<String, serde_json::Value> =
            TABLES.first().and_then(|(_, bytes)| serde_json::from_slice(bytes).ok()).unwrap_or_default();
        table.into_iter().map(|(k, _)| k).filter(|k| !k.starts_with('_')).collect()
    });
    &KEYS
}
