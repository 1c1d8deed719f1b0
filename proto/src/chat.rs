//! Chat-like JSON text messages, the payload permessage-deflate is measured with (issue 20):
//! what loadgen's `--payload json` publishes and what the compression benchmarks compress. Here
//! rather than in loadgen so that the server's tests can deflate the same text without
//! depending on the load generator.
//!
//! A message is one JSON object of exactly the size asked for: a caller's leading field
//! (loadgen's stamp), then a list of chat lines as a chat server pushes them, each with user,
//! ISO timestamp, room, message id and a `text` of a few words from a fixed vocabulary (the
//! last line cut to fit). Names, words and their order come from a splitmix64 stream of
//! `(seed, index)`, so the same arguments give the same bytes on every machine. It compresses
//! like chat does: repeated keys, names and common words, but ids and times that do not.

/// Everyday chat words, a few hundred, the most frequent first (`SplitMix::zipf` picks them).
const WORDS: &[&str] = &[
    "the",
    "a",
    "to",
    "and",
    "I",
    "you",
    "it",
    "is",
    "that",
    "of",
    "in",
    "on",
    "for",
    "this",
    "we",
    "be",
    "have",
    "not",
    "with",
    "just",
    "so",
    "but",
    "do",
    "are",
    "at",
    "was",
    "can",
    "if",
    "me",
    "my",
    "what",
    "no",
    "yes",
    "ok",
    "lol",
    "thanks",
    "think",
    "know",
    "get",
    "like",
    "about",
    "will",
    "one",
    "all",
    "now",
    "out",
    "up",
    "there",
    "they",
    "how",
    "when",
    "time",
    "good",
    "going",
    "see",
    "today",
    "tomorrow",
    "meeting",
    "deploy",
    "build",
    "test",
    "server",
    "client",
    "issue",
    "fix",
    "merge",
    "review",
    "branch",
    "release",
    "latency",
    "room",
    "message",
    "channel",
    "link",
    "doc",
    "update",
    "later",
    "soon",
    "sure",
    "maybe",
    "right",
    "again",
    "still",
    "really",
    "work",
    "working",
    "done",
    "start",
    "need",
    "want",
    "look",
    "looks",
    "great",
    "nice",
    "sorry",
    "please",
    "could",
    "would",
    "should",
    "check",
    "problem",
    "question",
    "answer",
    "team",
    "call",
    "lunch",
    "coffee",
    "morning",
    "afternoon",
    "weekend",
    "week",
    "friday",
    "monday",
    "ticket",
    "logs",
    "error",
    "crash",
    "restart",
    "config",
    "cluster",
    "node",
    "memory",
    "cpu",
    "disk",
    "network",
    "metrics",
    "dashboard",
    "alert",
    "page",
    "oncall",
    "incident",
    "rollback",
    "patch",
    "version",
    "numbers",
    "bench",
    "faster",
    "slower",
    "than",
    "before",
    "after",
    "because",
    "already",
    "yet",
    "also",
    "too",
    "here",
    "from",
    "by",
    "some",
    "any",
    "more",
    "less",
    "much",
    "many",
    "first",
    "last",
    "next",
    "new",
    "old",
    "big",
    "small",
    "easy",
    "hard",
    "idea",
    "plan",
    "change",
    "changes",
    "thing",
    "things",
    "people",
    "someone",
    "everyone",
    "back",
    "home",
    "office",
    "remote",
    "hey",
    "hi",
    "hello",
    "bye",
    "cool",
    "awesome",
    "agreed",
    "exactly",
    "hmm",
    "wait",
    "what's",
    "it's",
    "don't",
    "can't",
    "I'm",
    "that's",
    "let's",
    "we're",
    "you're",
    "didn't",
];

/// User names, as a room of a few dozen people shows them.
const USERS: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yuki", "zoe",
    "amara", "bjorn", "chen.wei", "dmitri", "esther", "fatima", "gustavo", "hiro", "ingrid",
    "jamal", "kasia", "lars", "maria_g", "noor", "oskar", "priya", "quinn", "rafael", "sanna",
    "tomasz", "uma", "vikram", "wen", "ximena", "yusuf", "zara", "ops-bot",
];

/// Rooms a message is posted to.
const ROOMS: &[&str] = &["general", "random", "dev", "ops", "release-2026", "support"];

/// Milliseconds from the snowflake epoch (2015-01-01) to 2026-12-06, the day of the timestamps.
const SNOWFLAKE_DAY_MS: u64 = 376_444_800_000;

/// Opening of the list of chat messages, after the caller's head.
const EVENTS_OPEN: &str = "\"events\":[";

/// Closing of the list and of the object.
const EVENTS_CLOSE: &str = "]}";

/// The smallest chat message: an empty text.
const EMPTY_EVENT: &str = "{\"text\":\"\"}";

/// Message `index` of stream `seed`: a JSON object of exactly `size` bytes (ASCII, so valid
/// UTF-8), `{HEAD,"events":[...]}`, whose first field is `head` (`"key":value`, written as
/// given; empty for none) and whose `events` are chat messages as a chat server pushes them
/// (a few words each, with user, ISO time, room and id) until the size is reached, the last one
/// cut to fit. `None` when `size` cannot hold `head` and one empty message.
pub fn message(seed: u64, index: u64, size: usize, head: &str) -> Option<Vec<u8>> {
    let mut rng = SplitMix(seed ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03));
    let mut out = String::with_capacity(size);
    out.push('{');
    out.push_str(head);
    if !head.is_empty() {
        out.push(',');
    }
    out.push_str(EVENTS_OPEN);
    if out.len() + EMPTY_EVENT.len() + EVENTS_CLOSE.len() > size {
        return None;
    }
    let end = size - EVENTS_CLOSE.len();
    // Seconds into the day, moving on with the index as a conversation does.
    let mut second = (index * 97 + rng.below(60)) % 86_400;
    loop {
        let full = event(&mut rng, second, usize::MAX);
        // Whole messages while one more (and the room for a last, empty one) fits.
        if out.len() + full.len() + 1 + EMPTY_EVENT.len() > end {
            break;
        }
        out.push_str(&full);
        out.push(',');
        second = (second + 1 + rng.below(20)) % 86_400;
    }
    let room = end - out.len();
    out.push_str(&event(&mut rng, second, room));
    out.push_str(EVENTS_CLOSE);
    debug_assert_eq!(out.len(), size);
    Some(out.into_bytes())
}

/// One chat message posted at `second` of the day: its natural length when `room` is
/// `usize::MAX`, else exactly `room` bytes (at least `EMPTY_EVENT`'s): the fields that fit,
/// then its text cut or lengthened to fit.
fn event(rng: &mut SplitMix, second: u64, room: usize) -> String {
    const TEXT_OPEN: &str = ",\"text\":\"";
    const CLOSE: &str = "\"}";
    let fields = [
        format!(
            "\"user\":\"{}\"",
            USERS[rng.below(USERS.len() as u64) as usize]
        ),
        format!(
            "\"ts\":\"2026-12-06T{:02}:{:02}:{:02}.{:03}Z\"",
            second / 3600,
            second / 60 % 60,
            second % 60,
            rng.below(1000)
        ),
        format!(
            "\"room\":\"{}\"",
            ROOMS[rng.below(ROOMS.len() as u64) as usize]
        ),
        // A snowflake id (milliseconds since 2015 << 22 | worker and sequence bits), as Discord
        // and Twitter number messages: close lines share the leading digits, the rest differ.
        format!(
            "\"id\":\"{}\"",
            ((SNOWFLAKE_DAY_MS + second * 1000 + rng.below(1000)) << 22) | rng.below(1 << 22)
        ),
    ];
    let mut out = String::from("{");
    for field in &fields {
        let comma = usize::from(out.len() > 1);
        if out.len() + comma + field.len() + TEXT_OPEN.len() + CLOSE.len() <= room {
            if comma == 1 {
                out.push(',');
            }
            out.push_str(field);
        }
    }
    out.push_str(if out.len() > 1 {
        TEXT_OPEN
    } else {
        &TEXT_OPEN[1..]
    });
    // A chat line is a few words to a couple of sentences.
    let natural = out.len() + 10 + rng.below(120) as usize;
    let text_end = if room == usize::MAX {
        natural
    } else {
        room - CLOSE.len()
    };
    let mut sentence_start = true;
    while out.len() < text_end {
        let word = WORDS[rng.zipf(WORDS.len())];
        if !out.ends_with('"') {
            out.push(' ');
        }
        // The last word is cut to fit: the size is exact.
        let word = &word[..word.len().min(text_end - out.len())];
        if sentence_start {
            let mut letters = word.chars();
            if let Some(first) = letters.next() {
                out.push(first.to_ascii_uppercase());
                out.push_str(letters.as_str());
            }
        } else {
            out.push_str(word);
        }
        sentence_start = rng.below(8) == 0;
        if sentence_start && out.len() < text_end {
            out.push(if rng.below(4) == 0 { '?' } else { '.' });
        }
    }
    out.push_str(CLOSE);
    out
}

/// splitmix64: small, fast and the same everywhere, which is all a payload needs.
struct SplitMix(u64);

impl SplitMix {
    /// The next 64 random bits.
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (the modulo bias is irrelevant here).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// An index in `0..n` skewed towards 0 the way word frequencies are (a few words make
    /// most of any text): u^3 for u uniform in [0, 1).
    fn zipf(&mut self, n: usize) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((n as f64 * u * u * u) as usize).min(n - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message as JSON, which it must be.
    fn parsed(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bytes).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(bytes));
        })
    }

    #[test]
    fn every_size_is_exact_json() {
        for size in 24..3000 {
            let bytes = message(1, size as u64, size, "").expect("fits");
            assert_eq!(bytes.len(), size);
            let json = parsed(&bytes);
            let events = json["events"].as_array().expect("a list");
            assert!(events.iter().all(|e| e["text"].is_string()), "{json}");
        }
        assert_eq!(message(1, 0, 23, ""), None);
    }

    #[test]
    fn a_head_leads_and_chat_lines_follow() {
        let head = "\"stamp\":\"0123\"";
        let bytes = message(7, 3, 1024, head).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.starts_with("{\"stamp\":\"0123\",\"events\":[{\"user\":\""),
            "{text}"
        );
        let json = parsed(&bytes);
        let events = json["events"].as_array().unwrap();
        assert!(events.len() > 3, "{text}");
        for key in ["user", "ts", "room", "id", "text"] {
            assert!(events[0][key].is_string(), "{key} in {text}");
        }
        assert!(events[0]["ts"].as_str().unwrap().starts_with("2026-12-06T"));
        let small = String::from_utf8(message(7, 3, 45, head).unwrap()).unwrap();
        assert!(
            small.starts_with("{\"stamp\":\"0123\",\"events\":[{\"text\":\""),
            "{small}"
        );
        assert_eq!(message(7, 3, 38, head), None);
    }

    #[test]
    fn the_same_seed_and_index_give_the_same_bytes() {
        assert_eq!(message(5, 9, 1024, ""), message(5, 9, 1024, ""));
        assert_ne!(message(5, 9, 1024, ""), message(5, 10, 1024, ""));
        assert_ne!(message(5, 9, 1024, ""), message(6, 9, 1024, ""));
    }
}
