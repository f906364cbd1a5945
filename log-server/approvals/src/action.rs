//! The action a request asks for, rendered for people: its `authorization_details` (RFC 9396)
//! as a one-line summary (the inbox, the page's headline) and in full (the request page), and
//! the checks of the agent's own note (`binding_message`) against it.
//!
//! Type-aware renderers lead with what a person decides on (a payment: amount, currency,
//! payee, account); every other member follows through the generic renderer, which humanises
//! member names (showing the exact name beside the label), puts `type` first and never hides a
//! member. The action is what the approver signs; the note is only the agent's words.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde_json::{Map, Value};
use unicode_security::{skeleton, MixedScript};

/// HTML-escapes text for element content and quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Longest one-line summary, in characters.
const SUMMARY_MAX: usize = 120;

/// The entries of `authorization_details` (one object is treated as a list of one).
fn entries(details: &Value) -> Vec<&Value> {
    match details {
        Value::Array(a) => a.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// A member name for people: `creditorName` → "Creditor name", `instructed_amount` →
/// "Instructed amount"; all-capital words (`IBAN`, `BIC`) stay as written.
pub(crate) fn humanise(name: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut prev: Option<char> = None;
    for ch in name.chars() {
        if ch == '_' || ch == '-' || ch == '.' || ch == ' ' {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
        } else {
            if ch.is_uppercase() && prev.is_some_and(|p| p.is_lowercase() || p.is_ascii_digit()) {
                words.push(std::mem::take(&mut cur));
            }
            cur.push(ch);
        }
        prev = Some(ch);
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    let mut out = String::new();
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let all_caps = w.chars().count() > 1 && !w.chars().any(char::is_lowercase);
        if all_caps {
            out.push_str(w);
        } else if i == 0 {
            let mut cs = w.chars();
            if let Some(f) = cs.next() {
                out.extend(f.to_uppercase());
                out.push_str(&cs.as_str().to_lowercase());
            }
        } else {
            out.push_str(&w.to_lowercase());
        }
    }
    if out.is_empty() {
        name.to_owned()
    } else {
        out
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    match cur {
        Value::String(s) => Some(s),
        _ => None,
    }
}

/// A scalar as text (strings as they are, other values as JSON).
fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An IBAN in groups of four, as printed on statements (the characters are unchanged).
fn group_iban(iban: &str) -> String {
    let compact: Vec<char> = iban.chars().filter(|c| !c.is_whitespace()).collect();
    compact
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a payment entry says, when it is one.
struct Payment<'a> {
    amount: Option<&'a str>,
    currency: Option<&'a str>,
    creditor: Option<&'a str>,
    iban: Option<&'a str>,
    /// Top-level members fully shown by the payment renderer.
    shown: BTreeSet<&'static str>,
}

fn payment(e: &Value) -> Option<Payment<'_>> {
    let t = e.get("type")?.as_str()?;
    if !matches!(t, "payment_initiation" | "payment" | "payment_order") {
        return None;
    }
    let mut shown = BTreeSet::from(["type"]);
    let (amount, currency) = if e.get("instructedAmount").is_some() {
        let inner = e.get("instructedAmount").and_then(Value::as_object);
        if inner.is_some_and(|m| m.keys().all(|k| k == "amount" || k == "currency")) {
            shown.insert("instructedAmount");
        }
        (
            str_at(e, &["instructedAmount", "amount"]),
            str_at(e, &["instructedAmount", "currency"]),
        )
    } else {
        let amount = str_at(e, &["amount"]);
        let currency = str_at(e, &["currency"]);
        if amount.is_some() {
            shown.insert("amount");
        }
        if currency.is_some() {
            shown.insert("currency");
        }
        (amount, currency)
    };
    let creditor = str_at(e, &["creditorName"]);
    if creditor.is_some() {
        shown.insert("creditorName");
    }
    let iban = str_at(e, &["creditorAccount", "iban"]);
    if e.get("creditorAccount")
        .and_then(Value::as_object)
        .is_some_and(|m| m.len() == 1 && iban.is_some())
    {
        shown.insert("creditorAccount");
    }
    Some(Payment {
        amount,
        currency,
        creditor,
        iban,
        shown,
    })
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// One entry in one line.
fn entry_summary(e: &Value) -> String {
    if let Some(p) = payment(e) {
        let mut s = format!(
            "Pay {} {}",
            p.amount.unwrap_or("(no amount)"),
            p.currency.unwrap_or("(no currency)")
        );
        if let Some(c) = p.creditor {
            let _ = write!(s, " to {c}");
        }
        if let Some(i) = p.iban {
            let _ = write!(s, " ({})", group_iban(i));
        }
        return s;
    }
    let Some(m) = e.as_object() else {
        return scalar_text(e);
    };
    let title = m
        .get("type")
        .map(|t| humanise(&scalar_text(t)))
        .unwrap_or_else(|| "Action".to_owned());
    let parts: Vec<String> = m
        .iter()
        .filter(|(k, v)| *k != "type" && !v.is_object() && !v.is_array())
        .map(|(k, v)| format!("{} {}", humanise(k).to_lowercase(), scalar_text(v)))
        .collect();
    if parts.is_empty() {
        title
    } else {
        format!("{title}: {}", parts.join(", "))
    }
}

/// The action in one line of plain text (escape it for HTML).
pub(crate) fn summary(details: &Value) -> String {
    let es = entries(details);
    let Some(first) = es.first() else {
        return "An action with no details".to_owned();
    };
    let more = match es.len() {
        1 => String::new(),
        2 => " (and 1 more action)".to_owned(),
        n => format!(" (and {} more actions)", n - 1),
    };
    let head = truncate(
        &entry_summary(first),
        SUMMARY_MAX.saturating_sub(more.len()),
    );
    format!("{head}{more}")
}

/// The member names of one object that a person could take for another of its names: the same
/// Unicode TS #39 skeleton once lower-cased (`amount` and `аmount` with a Cyrillic `а`, `Amount`
/// and `amount`, `l` and `1`), so that two values could hide behind one label.
pub(crate) fn confusable_names(m: &Map<String, Value>) -> BTreeSet<&str> {
    let mut groups: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for k in m.keys() {
        groups
            .entry(skeleton(&k.to_lowercase()).collect())
            .or_default()
            .push(k);
    }
    groups
        .into_values()
        .filter(|g| g.len() > 1)
        .flatten()
        .collect()
}

/// The first object in `v` with [look-alike member names](confusable_names): its path and two
/// of the names.
pub(crate) fn find_confusable_names(v: &Value, path: &str) -> Option<(String, String, String)> {
    match v {
        Value::Object(m) => {
            let c: Vec<&str> = confusable_names(m).into_iter().collect();
            if let [a, b, ..] = c.as_slice() {
                return Some((path.to_owned(), (*a).to_owned(), (*b).to_owned()));
            }
            m.iter()
                .find_map(|(k, v)| find_confusable_names(v, &format!("{path}.{k}")))
        }
        Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, v)| find_confusable_names(v, &format!("{path}[{i}]"))),
        _ => None,
    }
}

/// Whether text mixes writing systems (not single-script in Unicode TS #39's sense), as
/// look-alike text does ("ACME" with a Cyrillic "А").
fn mixes_scripts(s: &str) -> bool {
    !s.is_single_script()
}

/// The mark beside text that [mixes scripts](mixes_scripts); empty for any other.
fn script_mark(s: &str) -> &'static str {
    if mixes_scripts(s) {
        " <strong class=\"error\">mixes writing systems, as look-alike text does: check it \
         letter by letter</strong>"
    } else {
        ""
    }
}

/// Whether anything in the action is marked as possibly imitating something else.
pub(crate) fn has_lookalikes(v: &Value) -> bool {
    match v {
        Value::Object(m) => !confusable_names(m).is_empty() || m.values().any(has_lookalikes),
        Value::Array(a) => a.iter().any(has_lookalikes),
        Value::String(s) => mixes_scripts(s),
        _ => false,
    }
}

/// A member's label: the humanised name, with the exact name beside it.
fn label(out: &mut String, name: &str, confusable: bool) {
    let h = humanise(name);
    if confusable {
        let _ = write!(out, "<dt class=\"confusable\">{}", esc(&h));
        let _ = write!(
            out,
            " <code class=\"raw\">{}</code>",
            esc(&escaped_name(name))
        );
        out.push_str(
            " <strong class=\"error\">looks like another name here: two values may hide behind \
             one label; deny</strong></dt>",
        );
        return;
    }
    let _ = write!(out, "<dt>{}", esc(&h));
    // The exact name, where the label is more than a change of case.
    if h.to_lowercase() != name.to_lowercase() {
        let _ = write!(out, " <code class=\"raw\">{}</code>", esc(name));
    }
    out.push_str("</dt>");
}

/// A member name with every non-ASCII character also written as its code point, so that
/// look-alike names read differently.
fn escaped_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii() {
                c.to_string()
            } else {
                format!("{c}(U+{:04X})", c as u32)
            }
        })
        .collect()
}

/// A value: scalars as text, objects as nested lists, arrays as ordered lists.
fn value(out: &mut String, v: &Value) {
    match v {
        Value::Object(m) => members(out, m, &BTreeSet::new()),
        Value::Array(a) if a.is_empty() => out.push_str("<span class=\"lit\">(empty list)</span>"),
        Value::Array(a) => {
            out.push_str("<ol class=\"items\">");
            for v in a {
                out.push_str("<li>");
                value(out, v);
                out.push_str("</li>");
            }
            out.push_str("</ol>");
        }
        Value::String(s) if s.is_empty() => out.push_str("<span class=\"lit\">(empty)</span>"),
        Value::String(s) => {
            let _ = write!(
                out,
                "<span class=\"str\">{}</span>{}",
                esc(s),
                script_mark(s)
            );
        }
        other => {
            let _ = write!(
                out,
                "<span class=\"lit\">{}</span>",
                esc(&other.to_string())
            );
        }
    }
}

/// An object's members except `skip`: `type` first, then scalars, then nested values, each
/// group in name order.
fn members(out: &mut String, m: &Map<String, Value>, skip: &BTreeSet<&str>) {
    let mut keys: Vec<&String> = m.keys().filter(|k| !skip.contains(k.as_str())).collect();
    keys.sort_by_key(|k| {
        let v = &m[k.as_str()];
        (
            k.as_str() != "type",
            v.is_object() || v.is_array(),
            k.as_str(),
        )
    });
    if keys.is_empty() {
        return;
    }
    let confusable = confusable_names(m);
    out.push_str("<dl class=\"fields\">");
    for k in keys {
        label(out, k, confusable.contains(k.as_str()));
        out.push_str("<dd>");
        value(out, &m[k.as_str()]);
        out.push_str("</dd>");
    }
    out.push_str("</dl>");
}

fn payment_html(out: &mut String, e: &Map<String, Value>, p: &Payment<'_>) {
    out.push_str("<dl class=\"fields key\">");
    out.push_str("<dt>Amount</dt><dd class=\"amount\">");
    match (p.amount, p.currency) {
        (Some(a), Some(c)) => {
            let _ = write!(out, "<strong>{} {}</strong>", esc(a), esc(c));
        }
        (a, c) => {
            let _ = write!(
                out,
                "<strong>{} {}</strong>",
                esc(a.unwrap_or("(no amount)")),
                esc(c.unwrap_or("(no currency)"))
            );
        }
    }
    out.push_str("</dd>");
    if let Some(c) = p.creditor {
        let _ = write!(
            out,
            "<dt>To</dt><dd><strong>{}</strong>{}</dd>",
            esc(c),
            script_mark(c)
        );
    }
    if let Some(i) = p.iban {
        let _ = write!(
            out,
            "<dt>Account (IBAN)</dt><dd><code class=\"iban\">{}</code>{}</dd>",
            esc(&group_iban(i)),
            script_mark(i)
        );
    }
    out.push_str("</dl>");
    let rest = e.keys().any(|k| !p.shown.contains(k.as_str()));
    if rest {
        out.push_str("<h4>Everything else in this payment</h4>");
        members(out, e, &p.shown);
    }
}

/// The whole action as HTML: one card per entry.
pub(crate) fn render(details: &Value) -> String {
    let es = entries(details);
    let mut out = String::new();
    if es.is_empty() {
        out.push_str("<p>The agent sent no action details.</p>");
        return out;
    }
    for (i, e) in es.iter().enumerate() {
        out.push_str("<article class=\"action\">");
        let type_name = e.get("type").map(scalar_text);
        let title = match (&type_name, payment(e)) {
            (_, Some(_)) => "Payment".to_owned(),
            (Some(t), None) => humanise(t),
            (None, None) => "Action".to_owned(),
        };
        let _ = write!(out, "<h3>{}", esc(&title));
        if es.len() > 1 {
            let _ = write!(
                out,
                " <span class=\"muted\">({} of {})</span>",
                i + 1,
                es.len()
            );
        }
        if let Some(t) = &type_name {
            let _ = write!(out, " <code class=\"raw\">type: {}</code>", esc(t));
        }
        out.push_str("</h3>");
        match (e.as_object(), payment(e)) {
            (Some(m), Some(p)) => payment_html(&mut out, m, &p),
            (Some(m), None) => {
                let mut skip = BTreeSet::new();
                if type_name.is_some() {
                    skip.insert("type");
                }
                members(&mut out, m, &skip);
            }
            (None, _) => value(&mut out, e),
        }
        out.push_str("</article>");
    }
    out
}

/// Every string and number in the action (member names too), for the note check.
fn action_texts(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                out.push(k.clone());
                action_texts(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| action_texts(v, out)),
        Value::String(s) => out.push(s.clone()),
        Value::Number(n) => out.push(n.to_string()),
        _ => {}
    }
}

/// A number as written in prose ("4,200.00", "1,5", "42") in a canonical form ("4200", "1.5",
/// "42"), so that "1.00" in a note matches "1" or "1.0" in the action.
fn canonical_number(s: &str) -> Option<String> {
    if !s.chars().any(|c| c.is_ascii_digit()) {
        return None;
    }
    let last_dot = s.rfind('.');
    let last_comma = s.rfind(',');
    let decimal_sep = match (last_dot, last_comma) {
        (Some(d), Some(c)) => Some(if d > c { '.' } else { ',' }),
        (Some(_), None) => Some('.'),
        // "1,50" is a decimal comma; "4,200" a thousands separator.
        (None, Some(c)) if s.len() - c - 1 != 3 => Some(','),
        _ => None,
    };
    let (int, frac) = match decimal_sep.and_then(|sep| s.rsplit_once(sep)) {
        Some((i, f)) => (i.to_owned(), f.to_owned()),
        None => (s.to_owned(), String::new()),
    };
    let int: String = int.chars().filter(char::is_ascii_digit).collect();
    if !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    Some(if frac.is_empty() {
        int.to_owned()
    } else {
        format!("{int}.{frac}")
    })
}

/// ISO 4217 codes common enough to be named in a note without being an ordinary word.
const CURRENCIES: &[&str] = &[
    "EUR", "USD", "GBP", "CHF", "JPY", "CNY", "CAD", "AUD", "NZD", "SEK", "NOK", "DKK", "PLN",
    "CZK", "HUF", "RON", "BGN", "INR", "SGD", "HKD", "BRL", "MXN", "ZAR", "TRY", "KRW", "ILS",
    "AED", "SAR", "BTC", "ETH", "USDC", "USDT",
];

/// Words that start a request in prose and name nothing.
const ORDINARY: &[&str] = &[
    "a", "an", "and", "approve", "by", "for", "from", "in", "of", "on", "or", "pay", "please",
    "send", "the", "to", "transfer", "with", "deploy", "delete", "run", "buy", "sell", "refund",
    "i", "we", "you", "this", "that", "my", "our", "your", "today", "now", "invoice",
];

fn is_iban(word: &str) -> bool {
    let w: Vec<char> = word.chars().collect();
    w.len() >= 15
        && w.len() <= 34
        && w[..2].iter().all(char::is_ascii_uppercase)
        && w[2..4].iter().all(char::is_ascii_digit)
        && w[4..].iter().all(char::is_ascii_alphanumeric)
}

/// What the agent's note mentions that the action does not contain: amounts, currencies,
/// IBANs and names, each as written in the note. Empty when the note says nothing the action
/// does not.
pub(crate) fn note_mismatches(note: &str, details: &Value) -> Vec<String> {
    let mut texts = Vec::new();
    action_texts(details, &mut texts);
    let joined_lower = texts.join("\n").to_lowercase();
    let compact_upper: BTreeSet<String> = texts
        .iter()
        .map(|t| {
            t.chars()
                .filter(|c| !c.is_whitespace())
                .collect::<String>()
                .to_uppercase()
        })
        .collect();
    let mut numbers = BTreeSet::new();
    for t in &texts {
        for w in t.split(|c: char| !(c.is_ascii_digit() || c == '.' || c == ',')) {
            if let Some(n) = canonical_number(w.trim_matches(|c| c == '.' || c == ',')) {
                numbers.insert(n);
            }
        }
    }
    let mut out: Vec<String> = Vec::new();
    let mut push = |s: String| {
        if !out.contains(&s) {
            out.push(s);
        }
    };

    // IBANs, possibly written in groups of four.
    let words: Vec<&str> = note.split_whitespace().collect();
    let mut in_iban = vec![false; words.len()];
    for start in 0..words.len() {
        let mut compact = String::new();
        // Written in groups, an IBAN goes on in words of at most four characters.
        // (capitals and digits); one written without spaces is a single word.
        let group = |w: &str| {
            w.len() <= 4
                && w.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        };
        let first_len = words[start]
            .trim_matches(|c: char| !c.is_ascii_alphanumeric())
            .len();
        for (end, w) in words.iter().enumerate().skip(start).take(9) {
            let w = w.trim_matches(|c: char| !c.is_ascii_alphanumeric());
            if end > start && (first_len > 4 || !group(w)) {
                break;
            }
            compact.push_str(w);
            let next = words
                .get(end + 1)
                .map(|w| w.trim_matches(|c: char| !c.is_ascii_alphanumeric()))
                .filter(|n| first_len <= 4 && group(n));
            if is_iban(&compact) && !next.is_some_and(|n| is_iban(&format!("{compact}{n}"))) {
                if !compact_upper.iter().any(|t| t.contains(&compact)) {
                    push(compact.clone());
                }
                in_iban[start..=end].iter_mut().for_each(|b| *b = true);
                break;
            }
        }
    }

    let mut name: Vec<String> = Vec::new();
    let flush_name = |name: &mut Vec<String>, push: &mut dyn FnMut(String)| {
        if name.is_empty() {
            return;
        }
        let phrase = name.join(" ");
        let found = joined_lower.contains(&phrase.to_lowercase())
            || name
                .iter()
                .all(|w| joined_lower.contains(&w.to_lowercase()));
        if !found {
            push(phrase);
        }
        name.clear();
    };
    let mut sentence_start = true;
    for (i, raw) in words.iter().enumerate() {
        let ends_sentence = raw.ends_with(['.', '!', '?', ':']);
        let w = raw.trim_matches(|c: char| !c.is_alphanumeric() && !"€$£¥".contains(c));
        if in_iban[i] || w.is_empty() {
            flush_name(&mut name, &mut push);
            sentence_start = ends_sentence;
            continue;
        }
        // Currency symbols glued to amounts: "€1.00", "1.00€", "$5".
        let (sym, rest) = match w.char_indices().find(|(_, c)| "€$£¥".contains(*c)) {
            Some((at, c)) => (Some(c), format!("{}{}", &w[..at], &w[at + c.len_utf8()..])),
            None => (None, w.to_owned()),
        };
        if let Some(c) = sym {
            let codes: &[&str] = match c {
                '€' => &["EUR"],
                '£' => &["GBP"],
                '¥' => &["JPY", "CNY"],
                _ => &["USD", "CAD", "AUD", "NZD", "SGD", "HKD", "MXN"],
            };
            if !codes.iter().any(|k| compact_upper.contains(*k)) {
                push(c.to_string());
            }
        }
        let rest = rest.as_str();
        if rest.chars().any(|c| c.is_ascii_digit())
            && rest
                .chars()
                .all(|c| c.is_ascii_digit() || c == '.' || c == ',')
        {
            flush_name(&mut name, &mut push);
            if let Some(n) = canonical_number(rest) {
                if !numbers.contains(&n) {
                    push(rest.to_owned());
                }
            }
        } else if CURRENCIES.contains(&rest) {
            flush_name(&mut name, &mut push);
            if !compact_upper.contains(rest) {
                push(rest.to_owned());
            }
        } else if rest.chars().next().is_some_and(char::is_uppercase)
            && rest.chars().count() > 1
            && !ORDINARY.contains(&rest.to_lowercase().as_str())
            && (!sentence_start || !rest.chars().any(char::is_lowercase))
        {
            name.push(rest.to_owned());
        } else {
            flush_name(&mut name, &mut push);
        }
        if ends_sentence {
            flush_name(&mut name, &mut push);
        }
        sentence_start = ends_sentence;
    }
    flush_name(&mut name, &mut push);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn evil() -> Value {
        json!([{
            "type": "payment_initiation",
            "instructedAmount": {"currency": "EUR", "amount": "4200.00"},
            "creditorName": "Evil Corp",
            "creditorAccount": {"iban": "DE89370400440532013000"},
        }])
    }

    #[test]
    fn humanises_member_names() {
        assert_eq!(humanise("creditorName"), "Creditor name");
        assert_eq!(humanise("instructed_amount"), "Instructed amount");
        assert_eq!(
            humanise("remittanceInformationUnstructured"),
            "Remittance information unstructured"
        );
        assert_eq!(humanise("IBAN"), "IBAN");
        assert_eq!(humanise("creditorIBAN"), "Creditor IBAN");
        assert_eq!(humanise("type"), "Type");
        assert_eq!(humanise("__"), "__");
    }

    #[test]
    fn payment_summary_and_headline() {
        assert_eq!(
            summary(&evil()),
            "Pay 4200.00 EUR to Evil Corp (DE89 3704 0044 0532 0130 00)"
        );
        let html = render(&evil());
        assert!(html.contains("<strong>4200.00 EUR</strong>"), "{html}");
        assert!(html.contains("Evil Corp"));
        // Fully shown members are not repeated; nothing else is left out.
        assert!(!html.contains("Everything else"), "{html}");
    }

    #[test]
    fn payment_never_hides_a_member() {
        let d = json!({"type": "payment_initiation", "instructedAmount": {"currency": "EUR", "amount": "5", "fx": "x"},
            "creditorName": "A", "creditorAccount": {"iban": "DE89370400440532013000", "bic": "B1"}, "purpose": "rent"});
        let html = render(&d);
        for member in ["Fx", "Bic", "Purpose", "rent", "B1"] {
            assert!(html.contains(member), "{member} missing in {html}");
        }
    }

    #[test]
    fn generic_renderer_puts_type_first_and_escapes() {
        let d = json!([{"zone": "eu", "type": "deploy", "nested": {"a<b": [1, "x"]}, "actions": ["restart"]}]);
        assert_eq!(summary(&d), "Deploy: zone eu");
        let html = render(&d);
        assert!(
            html.contains("<h3>Deploy <code class=\"raw\">type: deploy</code></h3>"),
            "{html}"
        );
        assert!(html.contains("A&lt;b") && !html.contains("A<b"));
        assert!(html.find("Zone").unwrap() < html.find("Nested").unwrap());
        assert!(html.contains("restart"));
        let two = json!([{"type": "a"}, {"type": "b"}, {"type": "c"}]);
        assert_eq!(summary(&two), "A (and 2 more actions)");
        assert_eq!(summary(&json!([])), "An action with no details");
        let long = json!([{"type": "t", "x": "y".repeat(500)}]);
        assert_eq!(summary(&long).chars().count(), SUMMARY_MAX);
    }

    #[test]
    fn a_misleading_note_is_flagged() {
        assert_eq!(
            note_mismatches("Pay 1.00 EUR to ACME", &evil()),
            ["1.00", "ACME"]
        );
        assert_eq!(
            note_mismatches("Pay 4,200.00 EUR to Evil Corp", &evil()),
            Vec::<String>::new()
        );
        assert_eq!(
            note_mismatches(
                "Pay €4200 to Evil Corp, IBAN DE89 3704 0044 0532 0130 00.",
                &evil()
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            note_mismatches("Pay 4200 USD to Evil Corp", &evil()),
            ["USD"]
        );
        assert_eq!(
            note_mismatches("Send it to GB29NWBK60161331926819 for Bob Smith", &evil()),
            ["GB29NWBK60161331926819", "Bob Smith"]
        );
        assert_eq!(
            note_mismatches("Pay £10 to Evil Corp", &evil()),
            ["£", "10"]
        );
        let deploy = json!([{"type": "deploy", "service": "billing", "environment": "production"}]);
        assert_eq!(
            note_mismatches("Deploy billing to Production.", &deploy),
            Vec::<String>::new()
        );
        assert_eq!(note_mismatches("Deploy to Staging", &deploy), ["Staging"]);
    }

    #[test]
    fn look_alike_names_and_mixed_scripts_are_marked() {
        // "аmount" with a Cyrillic а; "Amount" differs from "amount" only in case.
        let d = json!([{"type": "p", "amount": "1", "\u{430}mount": "9999", "x": {"Fee": 1, "fee": 2}}]);
        let m = d[0].as_object().unwrap();
        assert_eq!(
            confusable_names(m).into_iter().collect::<Vec<_>>(),
            ["amount", "\u{430}mount"]
        );
        let (path, a, b) = find_confusable_names(&d, "authorization_details").unwrap();
        assert_eq!(
            (path.as_str(), a.as_str(), b.as_str()),
            ("authorization_details[0]", "amount", "\u{430}mount")
        );
        let nested = json!([{"type": "p", "x": {"Fee": 1, "fee": 2}}]);
        assert_eq!(find_confusable_names(&nested, "d").unwrap().0, "d[0].x");
        let html = render(&d);
        assert_eq!(
            html.matches("looks like another name here").count(),
            4,
            "{html}"
        );
        assert!(
            html.contains("\u{430}(U+0430)mount"),
            "the odd letter is spelled out: {html}"
        );
        assert!(has_lookalikes(&d));

        // "АCME" with a Cyrillic А: one label, a value mixing scripts.
        let d = json!([{"type": "payment_initiation", "instructedAmount": {"currency": "EUR", "amount": "5"},
            "creditorName": "\u{410}CME", "note": "ok"}]);
        assert!(has_lookalikes(&d));
        assert!(
            render(&d).contains("mixes writing systems"),
            "the payee is marked"
        );
        assert!(mixes_scripts("\u{410}CME") && !mixes_scripts("ACME") && !mixes_scripts("Ærø 42"));
        assert!(
            render(&json!([{"type": "t", "to": "\u{410}CME"}])).contains("mixes writing systems")
        );
        assert!(!has_lookalikes(&evil()));
        assert_eq!(find_confusable_names(&evil(), "d"), None);
    }

    #[test]
    fn numbers_in_prose() {
        assert_eq!(canonical_number("4,200.00").as_deref(), Some("4200"));
        assert_eq!(canonical_number("1,50").as_deref(), Some("1.5"));
        assert_eq!(canonical_number("4.200,5").as_deref(), Some("4200.5"));
        assert_eq!(canonical_number("007").as_deref(), Some("7"));
        assert_eq!(canonical_number("0.00").as_deref(), Some("0"));
        assert_eq!(canonical_number("abc"), None);
    }
}
