//! The registry snapshot's key: a model name that is compared without a
//! call to `memcmp`. A lookup compares the name it is given with the key it
//! finds, and for names of a few bytes the call to libc's `memcmp` that
//! `str`'s comparison makes was about a third of a cached lookup's time
//! (measured with `perf` on the `hot_path` bench); word-sized loads compare
//! them inline.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

/// A model name owned by the snapshot.
#[derive(Clone, Debug)]
pub(super) struct Key(pub(super) String);

/// A borrowed model name, as a lookup asks for it.
#[repr(transparent)]
pub(super) struct Name(str);

impl Name {
    pub(super) fn new(name: &str) -> &Name {
        // SAFETY: `Name` is a `repr(transparent)` wrapper of `str`: both
        // references have the same layout and metadata (`std::path::Path::new`
        // does the same for `OsStr`).
        unsafe { &*(name as *const str as *const Name) }
    }
}

impl PartialEq for Name {
    #[inline(always)]
    fn eq(&self, other: &Name) -> bool {
        same_bytes(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl Eq for Name {}

impl Hash for Name {
    #[inline(always)]
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}

impl Borrow<Name> for Key {
    #[inline]
    fn borrow(&self) -> &Name {
        Name::new(&self.0)
    }
}

// `Key`'s equality and hash are `Name`'s, as `Borrow` requires.
impl PartialEq for Key {
    #[inline]
    fn eq(&self, other: &Key) -> bool {
        Name::new(&self.0) == Name::new(&other.0)
    }
}

impl Eq for Key {}

impl Hash for Key {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        Name::new(&self.0).hash(state)
    }
}

/// `a == b`. Up to 16 bytes, in two (overlapping) loads of each side;
/// longer names through `memcmp`, whose call then costs less than the bytes.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0..=3 => a.iter().zip(b).all(|(x, y)| x == y),
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

/// A name of at most 16 bytes as two words that, with its length,
/// determine it: its first and last eight bytes (or four, or the bytes
/// themselves for the shortest). `None` for a longer name.
#[inline(always)]
pub(super) fn words(b: &[u8]) -> Option<(u64, u64)> {
    let n = b.len();
    Some(match n {
        0..=3 => (b.iter().fold(0, |h, &c| h << 8 | u64::from(c)), 0),
        4..=7 => (u64::from(half(b, 0)), u64::from(half(b, n - 4))),
        8..=16 => (word(b, 0), word(b, n - 8)),
        _ => return None,
    })
}

/// The eight bytes of `s` from `at`.
#[inline(always)]
fn word(s: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(s[at..at + 8].try_into().expect("8 bytes"))
}

/// The four bytes of `s` from `at`.
#[inline(always)]
fn half(s: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(s[at..at + 4].try_into().expect("4 bytes"))
}

#[cfg(test)]
mod tests {
    use super::{same_bytes, words};

    #[test]
    fn words_and_length_determine_a_short_name() {
        for n in 0..=16usize {
            let a: Vec<u8> = (0..n as u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
            assert!(words(&a).is_some(), "length {n}");
            assert_eq!(words(&a), words(&a.clone()), "equal, length {n}");
            for at in 0..n {
                let mut b = a.clone();
                b[at] ^= 1;
                assert_ne!(words(&a), words(&b), "length {n}, differs at {at}");
            }
        }
        assert_eq!(words(&[7; 17]), None);
    }

    #[test]
    fn same_bytes_agrees_with_slice_equality() {
        for n in 0..40usize {
            let a: Vec<u8> = (0..n as u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
            assert!(same_bytes(&a, &a.clone()), "equal, length {n}");
            for at in 0..n {
                let mut b = a.clone();
                b[at] ^= 1;
                assert!(!same_bytes(&a, &b), "length {n}, differs at {at}");
            }
            let mut longer = a.clone();
            longer.push(0);
            assert!(!same_bytes(&a, &longer), "lengths {n} and {}", n + 1);
        }
    }
}
